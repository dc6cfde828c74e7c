#!/bin/sh
# Creates a development certificate authority and a server certificate signed by it, for TLS
# between fedcl-server and its clients on a test network. NOT for production: see docs/deploy.md's
# runbook for supplying real certificates.
#
#   deploy/dev_ca.sh OUT_DIR [SERVER_NAME ...]
#
# Writes OUT_DIR/ca.pem (give this to clients: --tls_ca), OUT_DIR/ca.key, OUT_DIR/server.pem
# and OUT_DIR/server.key (give these to the server: tls { cert_file key_file }). The server
# certificate is valid for localhost, 127.0.0.1 and every SERVER_NAME given (DNS names or IPs).
# Idempotent: an existing CA is reused, the server certificate is reissued.
set -eu
out=${1:?usage: dev_ca.sh OUT_DIR [SERVER_NAME ...]}
shift
mkdir -p "$out"
umask 077

if [ ! -f "$out/ca.key" ] || [ ! -f "$out/ca.pem" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 \
    -subj "/CN=fedcl development CA" \
    -keyout "$out/ca.key" -out "$out/ca.pem" 2>/dev/null
fi

san="DNS:localhost,IP:127.0.0.1"
for name in "$@"; do
  case "$name" in
    *[!0-9.]*) san="$san,DNS:$name" ;;
    *) san="$san,IP:$name" ;;
  esac
done

ext=$(mktemp)
trap 'rm -f "$ext" "$out/server.csr"' EXIT
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' "$san" > "$ext"
openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=fedcl-server" \
  -keyout "$out/server.key" -out "$out/server.csr" 2>/dev/null
openssl x509 -req -in "$out/server.csr" -CA "$out/ca.pem" -CAkey "$out/ca.key" -CAcreateserial \
  -days 825 -sha256 -extfile "$ext" -out "$out/server.pem" 2>/dev/null
chmod 644 "$out/ca.pem" "$out/server.pem"
echo "dev_ca: CA $out/ca.pem, server certificate $out/server.pem for $san"
