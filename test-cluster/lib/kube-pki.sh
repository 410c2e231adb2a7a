# shellcheck shell=bash
# Certificates and kubeconfigs of the test clusters (vm/k8s.sh: the node VM; host-node.sh: a
# node on this host), made with openssl: a CA per cluster, client certificates whose CN and O
# are the Kubernetes user and group, server certificates with their subjectAltNames.
# Sourced; every function works in the directory $PKI.

# pki_ca CN: a fresh $PKI with a CA (ca.key, ca.crt) and the service-account key pair.
pki_ca() {
	rm -rf "$PKI"
	mkdir -p "$PKI"
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$PKI/ca.key" -out "$PKI/ca.crt" -days 30 \
		-subj "/CN=$1" -addext basicConstraints=critical,CA:TRUE \
		-addext keyUsage=critical,keyCertSign,cRLSign,digitalSignature 2>/dev/null
	openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
	openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
}

# pki_cert NAME CN [O] [SANS]: NAME.key and NAME.crt signed by the CA, for clients and (with
# SANS, an openssl subjectAltName value) servers.
pki_cert() {
	local name=$1 cn=$2 o=${3:-} sans=${4:-} subj ext
	subj="/CN=$cn"
	[[ -z $o ]] || subj="/O=$o$subj"
	ext="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=${sans:+serverAuth,}clientAuth"
	[[ -z $sans ]] || ext+=$'\n'"subjectAltName=$sans"
	openssl req -new -newkey rsa:2048 -nodes -keyout "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
	openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial -days 30 \
		-extfile <(printf '%s\n' "$ext") -out "$PKI/$name.crt" 2>/dev/null
	rm -f "$PKI/$name.csr"
}

# pki_kubeconfig CLUSTER NAME SERVER: a kubeconfig for the client certificate NAME on the API
# server at SERVER (certificates inlined), on stdout.
pki_kubeconfig() {
	cat <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: $1
    cluster:
      server: $3
      certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
  - name: $2
    user:
      client-certificate-data: $(base64 -w0 "$PKI/$2.crt")
      client-key-data: $(base64 -w0 "$PKI/$2.key")
contexts:
  - name: $1
    context: { cluster: $1, user: $2 }
current-context: $1
EOF
}
