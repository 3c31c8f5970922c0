# Sourced: the platform's own secrets, generated on first use and kept in files only their owner
# can read ($EMGAPI_DATA_DIR/secrets, 0700; each file 0600).
#   secret NAME      print the secret NAME (32 random letters and digits), creating it if needed
#   secret_file NAME print the path of that file (creating the secret if needed)
SECRETS_DIR="$EMGAPI_DATA_DIR/secrets"

secret_file() {
  local file="$SECRETS_DIR/$1"
  if [ ! -s "$file" ]; then
    (
      umask 077
      mkdir -p "$SECRETS_DIR"
      # tr reads until it has 32 characters: no modulo bias, no partial secret on an interrupted write
      LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32 >"$file.tmp.$$"
      mv "$file.tmp.$$" "$file"
    )
  fi
  chmod 700 "$SECRETS_DIR"; chmod 600 "$file"
  echo "$file"
}

secret() { cat "$(secret_file "$1")"; }
