// Package client is what fcri and the CRI end-to-end tests share: a connection to a runtime's
// CRI socket, crictl-style JSON configs and the CRI container log format.
package client

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Client holds the two CRI services of one runtime endpoint, as kubelet uses them.
type Client struct {
	Runtime cri.RuntimeServiceClient
	Image   cri.ImageServiceClient
	conn    *grpc.ClientConn
}

// Dial connects to endpoint (unix:///path.sock; a bare path means a unix socket). gRPC
// connects lazily: an endpoint nobody serves fails at the first call.
func Dial(endpoint string) (*Client, error) {
	if !strings.Contains(endpoint, "://") {
		endpoint = "unix://" + endpoint
	}
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("CRI endpoint %s: %w", endpoint, err)
	}
	return &Client{Runtime: cri.NewRuntimeServiceClient(conn), Image: cri.NewImageServiceClient(conn), conn: conn}, nil
}

// Close ends the connection.
func (c *Client) Close() error { return c.conn.Close() }

// LoadJSON fills m from a crictl-style JSON file (snake_case or lowerCamelCase field names).
func LoadJSON(path string, m proto.Message) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := protojson.Unmarshal(b, m); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// ParseLog reads a CRI log ("TIMESTAMP STREAM P|F CONTENT" lines, P marking a line the
// runtime split) and hands each piece of content to emit with its stream, a full line's with
// its newline. Lines of other streams or of another shape are skipped.
func ParseLog(r io.Reader, emit func(stream, content string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), " ", 4)
		if len(parts) < 3 || (parts[1] != "stdout" && parts[1] != "stderr") {
			continue
		}
		content := ""
		if len(parts) == 4 {
			content = parts[3]
		}
		if parts[2] != "P" {
			content += "\n"
		}
		if err := emit(parts[1], content); err != nil {
			return err
		}
	}
	return sc.Err()
}

// Log is a container's output by stream.
type Log struct{ Stdout, Stderr string }

// ReadLog reads the CRI log file at path.
func ReadLog(path string) (Log, error) {
	f, err := os.Open(path)
	if err != nil {
		return Log{}, err
	}
	defer f.Close()
	var out, errs strings.Builder
	err = ParseLog(f, func(stream, content string) error {
		if stream == "stdout" {
			out.WriteString(content)
		} else {
			errs.WriteString(content)
		}
		return nil
	})
	return Log{Stdout: out.String(), Stderr: errs.String()}, err
}
