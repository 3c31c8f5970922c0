# Sourced: the platform's own secrets, generated on first use and kept in files only their owner
# can read ($EMGAPI_DATA_DIR/secrets, 0700; each file 0600).
#   secret NAME      print the secret NAME (48 hex digits: 192 random bits), creating it if needed
#   secret_file NAME print the path of that file (creating the secret if needed)
SECRETS_DIR="$EMGAPI_DATA_DIR/secrets"

secret_file() {
  local file="$SECRETS_DIR/$1"
  if [ ! -s "$file" ]; then
    (
      umask 077
      mkdir -p "$SECRETS_DIR"
      # od reads exactly 24 bytes (no pipe that a SIGPIPE could fail under pipefail)
      od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$file.tmp.$$"
      mv "$file.tmp.$$" "$file"
    )
  fi
  chmod 700 "$SECRETS_DIR"; chmod 600 "$file"
  echo "$file"
}

secret() {  # fails (and so stops a `set -e` script) rather than print an empty secret
  local file value
  file=$(secret_file "$1") && value=$(cat "$file") && [ -n "$value" ] || { echo "secret $1: could not be made in $SECRETS_DIR" >&2; return 1; }
  echo "$value"
}
