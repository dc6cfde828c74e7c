#!/bin/sh
# Makes bearer tokens for clients or simulator workers and the server's tokens file.
#
#   deploy/make_tokens.sh OUT_DIR client FIRST-LAST    # one token per client id
#   deploy/make_tokens.sh OUT_DIR worker FIRST-LAST    # one worker token for the whole range
#   deploy/make_tokens.sh OUT_DIR shards N-K           # K simulator shards over N clients:
#                                                      # OUT_DIR/shard-<i>.token covers shard i
#
# Each secret goes to its own file, OUT_DIR/client-<id>.token or OUT_DIR/worker-<first>-<last>.token
# (mode 600; give it to that device or worker), and only its SHA-256 goes to OUT_DIR/tokens.txt,
# the server's tokens_file (server/token_auth.h). Tokens are 256 random bits from openssl.
# Appends to tokens.txt; ids already present are skipped.
set -eu
out=${1:?usage: make_tokens.sh OUT_DIR client|worker FIRST-LAST}
kind=${2:?usage: make_tokens.sh OUT_DIR client|worker FIRST-LAST}
range=${3:?usage: make_tokens.sh OUT_DIR client|worker FIRST-LAST}
first=${range%-*}
last=${range#*-}
mkdir -p "$out"
umask 077
touch "$out/tokens.txt"

issue() {  # issue NAME ENTRY_IDS
  file="$out/$1.token"
  if grep -q "^$kind $2 " "$out/tokens.txt"; then return; fi
  token=$(openssl rand -hex 32)
  printf '%s' "$token" > "$file"
  digest=$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)
  echo "$kind $2 sha256:$digest" >> "$out/tokens.txt"
}

case "$kind" in
  client)
    id=$first
    while [ "$id" -le "$last" ]; do
      issue "client-$id" "$id"
      id=$((id + 1))
    done ;;
  worker) issue "worker-$first-$last" "$first-$last" ;;
  shards)
    # Shard i of K covers clients [N*i/K, N*(i+1)/K), as fedcl-sim --worker splits them.
    n=$first
    k=$last
    kind=worker  # shard tokens are worker tokens
    i=0
    while [ "$i" -lt "$k" ]; do
      lo=$((n * i / k))
      hi=$((n * (i + 1) / k - 1))
      issue "shard-$i" "$lo-$hi"
      i=$((i + 1))
    done ;;
  *) echo "make_tokens: kind must be client, worker or shards" >&2; exit 2 ;;
esac
chmod 644 "$out/tokens.txt"
echo "make_tokens: tokens in $out, hashes in $out/tokens.txt"
