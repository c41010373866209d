#!/bin/sh
# Regenerates the SMTP test certificates (valid for 100 years). Run from this folder.
#   ca.pem / ca-key.pem             test CA the tests trust through the `ca` option
#   server.pem / server-key.pem     localhost + 127.0.0.1, signed by the test CA
#   untrusted.pem / untrusted-key.pem  self-signed localhost + 127.0.0.1, trusted by nobody
set -eu
days=36500
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days "$days" \
  -keyout ca-key.pem -out ca.pem -subj "/CN=mass-mailer test CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout server-key.pem -out server.csr -subj "/CN=localhost"
cat > server.ext <<'X'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1
X
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days "$days" \
  -extfile server.ext -out server.pem
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days "$days" \
  -keyout untrusted-key.pem -out untrusted.pem -subj "/CN=localhost" \
  -addext "basicConstraints=critical,CA:FALSE" -addext "extendedKeyUsage=serverAuth" \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1"
rm -f server.csr server.ext ca.srl
