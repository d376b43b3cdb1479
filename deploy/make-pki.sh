#!/usr/bin/env bash
# Makes a private CA and the aggregator's HTTPS certificate, for a site without a CA of its own.
#
#   deploy/make-pki.sh DIR NAME [NAME...]
#
# NAME: each host name or IP address agents (and tributaryctl, Prometheus) will use in the
# aggregator's URL; they all go into the certificate's subject alternative names, which clients
# check. Writes, in DIR: aggregator-ca.pem (give it to every gateway, operator and Prometheus),
# aggregator-ca.key (keep it offline: it signs certificates), aggregator.pem and aggregator.key
# (the aggregator's `tls.cert_file` and `tls.key_file`). The certificate is valid for 825 days;
# run again with the same DIR to renew it under the same CA (the CA is kept when it exists).
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 DIR NAME [NAME...]   (NAME: a host name or IP address agents use in aggregator.url)" >&2
  exit 2
fi
dir=$1; shift
command -v openssl >/dev/null || { echo "$0: openssl is needed (apt-get install openssl)" >&2; exit 1; }
mkdir -p "$dir"
umask 077
sans=""
for name in "$@"; do
  if [[ $name =~ ^[0-9.]+$ || $name == *:* ]]; then sans+="IP:$name,"; else sans+="DNS:$name,"; fi
done
sans=${sans%,}
if [ ! -f "$dir/aggregator-ca.pem" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/CN=Tributary aggregator CA" -keyout "$dir/aggregator-ca.key" -out "$dir/aggregator-ca.pem" 2>/dev/null
fi
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
  -keyout "$dir/aggregator.key" -out "$dir/aggregator.csr" 2>/dev/null
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n' "$sans" > "$dir/aggregator.ext"
openssl x509 -req -in "$dir/aggregator.csr" -CA "$dir/aggregator-ca.pem" -CAkey "$dir/aggregator-ca.key" -CAcreateserial \
  -days 825 -extfile "$dir/aggregator.ext" -out "$dir/aggregator.pem" 2>/dev/null
rm -f "$dir/aggregator.csr" "$dir/aggregator.ext" "$dir/aggregator-ca.srl"
chmod 0644 "$dir/aggregator-ca.pem" "$dir/aggregator.pem"
chmod 0600 "$dir/aggregator-ca.key" "$dir/aggregator.key"
echo "made $dir/aggregator.pem for $sans, signed by $dir/aggregator-ca.pem"
