#!/bin/sh
# Remakes the keyless fixtures of keyless.rs's unit tests with scripts/cosign-interop.py (an
# independent implementation, Python `cryptography`): two test Sigstores and keyless layers
# signing sha256("manifest"). Run from the repository's root.
set -eu
out=registry/src/signature/keyless/testdata
script=scripts/cosign-interop.py
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 "$script" sigstore-init "$tmp/a"
python3 "$script" sigstore-init "$tmp/b"
cp "$tmp/a/trusted_root.json" "$out/trusted_root.json"
cp "$tmp/b/trusted_root.json" "$out/other_root.json"
digest=sha256:$(printf manifest | sha256sum | cut -c1-64)
sign() {
    name=$1
    shift
    python3 "$script" sign-keyless r.test acme/packets "$digest" "$tmp/a" --out "$out/$name.json" "$@"
}
workflow=https://github.com/acme/packets/.github/workflows/release.yml@refs/heads/main
github=https://token.actions.githubusercontent.com
sign layer --subject "$workflow" --issuer "$github"
sign expired --subject "$workflow" --issuer "$github" --expired
sign v1_email --subject dev@example.com --issuer https://accounts.example --v1-issuer
sign server_auth --subject "$workflow" --issuer "$github" --server-auth
sign foreign_signature --subject "$workflow" --issuer "$github" --foreign-signature
sign no_sct --subject "$workflow" --issuer "$github" --no-sct
sign bad_sct --subject "$workflow" --issuer "$github" --bad-sct
