#!/usr/bin/env python3
"""An independent implementation of cosign's key-based signature scheme, for arkham's interop test.

Written from the scheme's description (the simple-signing payload, the `sha256-HEX.sig` tag, the
`dev.cosignproject.cosign/signature` annotation), with python3's standard library for the OCI
distribution API (plain HTTP, anonymous: a loopback test registry) and `cryptography` (Debian's
python3-cryptography) for ECDSA P-256. It shares no code with arkham.

cosign's encrypted key files (`cosign generate-key-pair`) are written and read from the format's
description too: a PEM block `ENCRYPTED SIGSTORE PRIVATE KEY` whose body is JSON naming scrypt
(its N, r, p and salt) and NaCl's secretbox (its nonce), with the sealed PKCS#8 key; the password
is COSIGN_PASSWORD's. For those, the standard library's `hashlib.scrypt` and PyNaCl's `SecretBox`
(Debian's python3-nacl), imported only then.

  cosign-interop.py genkey [--encrypt] PREFIX            -> PREFIX.key (PKCS#8, or encrypted), PREFIX.pub
  cosign-interop.py sign   HOST REPO DIGEST PRIVATE.pem  -> adds a signature layer (key plain or encrypted)
  cosign-interop.py verify HOST REPO DIGEST PUBLIC.pem   -> exit 0 iff a layer verifies with the key
  cosign-interop.py decrypt PRIVATE.key PUBLIC.pem       -> exit 0 iff the encrypted key opens with
                                                            COSIGN_PASSWORD and is PUBLIC's private half
"""

import base64
import hashlib
import json
import os
import sys
import urllib.error
import urllib.request

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
ANNOTATION = "dev.cosignproject.cosign/signature"


def request(method, url, data=None, content_type=None):
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Accept", MANIFEST)
    if content_type:
        req.add_header("Content-Type", content_type)
    return urllib.request.urlopen(req, timeout=30)


def sig_tag(digest):
    return "sha256-" + digest.split(":", 1)[1] + ".sig"


def get_manifest(host, repo, tag):
    try:
        with request("GET", f"http://{host}/v2/{repo}/manifests/{tag}") as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise


def get_blob(host, repo, digest):
    with request("GET", f"http://{host}/v2/{repo}/blobs/{digest}") as r:
        data = r.read()
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise SystemExit(f"blob {digest} does not match its digest")
    return data


def put_blob(host, repo, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with request("POST", f"http://{host}/v2/{repo}/blobs/uploads/", data=b"") as r:
        location = r.headers["Location"]
    if location.startswith("/"):
        location = f"http://{host}{location}"
    sep = "&" if "?" in location else "?"
    with request("PUT", f"{location}{sep}digest={digest}", data, "application/octet-stream"):
        pass
    return {"mediaType": "", "size": len(data), "digest": digest}


ENCRYPTED_LABELS = ("ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY")
# What this writes: the cost current cosign writes (2^16; arkham writes 2^15, so both are read).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 65536, 8, 1


def password():
    value = os.environ.get("COSIGN_PASSWORD")
    if value is None:
        raise SystemExit("COSIGN_PASSWORD is not set: it holds the encrypted key's password")
    return value.encode()


def pem_block(text):
    """The label and bytes of the first PEM block of `text`."""
    lines = text.strip().splitlines()
    if not lines or not lines[0].startswith("-----BEGIN ") or not lines[0].endswith("-----"):
        raise SystemExit("not PEM")
    label = lines[0][len("-----BEGIN "):-len("-----")]
    end = lines.index(f"-----END {label}-----")
    return label, base64.b64decode("".join(lines[1:end]))


def to_pem(label, data):
    body = base64.b64encode(data).decode()
    wrapped = "\n".join(body[i:i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN {label}-----\n{wrapped}\n-----END {label}-----\n"


def scrypt(secret, salt, n, r, p):
    # OpenSSL wants a little more than scrypt's 128·N·r bytes.
    return hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, maxmem=2 * 128 * n * r + (1 << 20),
                          dklen=32)


def encrypt(pkcs8, secret):
    from nacl.secret import SecretBox
    salt, nonce = os.urandom(32), os.urandom(SecretBox.NONCE_SIZE)
    sealed = SecretBox(scrypt(secret, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)).encrypt(pkcs8, nonce)
    b64 = lambda b: base64.b64encode(b).decode()
    return json.dumps({
        "kdf": {"name": "scrypt", "params": {"N": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P},
                "salt": b64(salt)},
        "cipher": {"name": "nacl/secretbox", "nonce": b64(nonce)},
        # PyNaCl's ciphertext is NaCl's: the 16-byte tag, then the encrypted bytes.
        "ciphertext": b64(sealed.ciphertext),
    }, separators=(",", ":")).encode()


def decrypt(envelope, secret):
    from nacl.exceptions import CryptoError
    from nacl.secret import SecretBox
    data = json.loads(envelope)
    if data["kdf"]["name"] != "scrypt" or data["cipher"]["name"] != "nacl/secretbox":
        raise SystemExit(f"unknown kdf or cipher: {data['kdf']['name']}, {data['cipher']['name']}")
    params = data["kdf"]["params"]
    if params["N"] * params["r"] * params["p"] * 128 > 256 << 20:
        raise SystemExit(f"scrypt parameters too costly: {params}")
    key = scrypt(secret, base64.b64decode(data["kdf"]["salt"]), params["N"], params["r"],
                 params["p"])
    try:
        return SecretBox(key).decrypt(base64.b64decode(data["ciphertext"]),
                                      base64.b64decode(data["cipher"]["nonce"]))
    except CryptoError:
        raise SystemExit("wrong password (or the file is corrupt)")


def load_private(key_file):
    with open(key_file) as f:
        text = f.read()
    label, data = pem_block(text)
    if label in ENCRYPTED_LABELS:
        return serialization.load_der_private_key(decrypt(data, password()), password=None)
    return serialization.load_pem_private_key(text.encode(), password=None)


def fingerprint(public_key):
    spki = public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def genkey(*args):
    encrypted = args[0] == "--encrypt"
    prefix = args[-1]
    key = ec.generate_private_key(ec.SECP256R1())
    if encrypted:
        pkcs8 = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
        private = to_pem(ENCRYPTED_LABELS[0], encrypt(pkcs8, password())).encode()
    else:
        private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    with open(prefix + ".key", "wb") as f:
        f.write(private)
    with open(prefix + ".pub", "wb") as f:
        f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo))


def sign(host, repo, digest, key_file):
    key = load_private(key_file)
    payload = json.dumps({
        "critical": {
            "identity": {"docker-reference": f"{host}/{repo}"},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": None,
    }, separators=(",", ":")).encode()
    signature = base64.b64encode(key.sign(payload, ec.ECDSA(hashes.SHA256()))).decode()
    layer = put_blob(host, repo, payload)
    layer["mediaType"] = SIMPLESIGNING
    layer["annotations"] = {ANNOTATION: signature}
    existing = get_manifest(host, repo, sig_tag(digest))
    layers = (existing or {}).get("layers", []) + [layer]
    config = json.dumps({
        "architecture": "", "os": "", "config": {}, "created": "0001-01-01T00:00:00Z",
        "rootfs": {"type": "layers", "diff_ids": [l["digest"] for l in layers]},
    }).encode()
    config_descriptor = put_blob(host, repo, config)
    config_descriptor["mediaType"] = "application/vnd.oci.image.config.v1+json"
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST,
                           "config": config_descriptor, "layers": layers}).encode()
    with request("PUT", f"http://{host}/v2/{repo}/manifests/{sig_tag(digest)}", manifest, MANIFEST):
        pass
    print(f"signed {host}/{repo}@{digest}: {len(layers)} signature(s)")


def verify(host, repo, digest, key_file):
    with open(key_file, "rb") as f:
        key = serialization.load_pem_public_key(f.read())
    signer = fingerprint(key)
    manifest = get_manifest(host, repo, sig_tag(digest))
    if manifest is None:
        raise SystemExit(f"no signature: no tag {sig_tag(digest)}")
    for layer in manifest.get("layers", []):
        if layer.get("mediaType") != SIMPLESIGNING:
            continue
        payload = get_blob(host, repo, layer["digest"])
        body = json.loads(payload)
        if body["critical"]["image"]["docker-manifest-digest"] != digest:
            continue
        if body["critical"]["type"] != "cosign container image signature":
            continue
        signature = base64.b64decode(layer.get("annotations", {}).get(ANNOTATION, ""))
        try:
            key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            continue
        print(f"verified {host}/{repo}@{digest}: signed by {signer}")
        return
    raise SystemExit(f"no signature by {signer} covers {digest}")


def decrypt_command(key_file, public_file):
    with open(key_file) as f:
        label, data = pem_block(f.read())
    if label not in ENCRYPTED_LABELS:
        raise SystemExit(f"{key_file} is a `{label}` PEM, not an encrypted cosign key")
    key = serialization.load_der_private_key(decrypt(data, password()), password=None)
    with open(public_file, "rb") as f:
        public = serialization.load_pem_public_key(f.read())
    if fingerprint(key.public_key()) != fingerprint(public):
        raise SystemExit(f"{key_file} opens, but is not the private half of {public_file}")
    print(f"decrypted {key_file}: the private key of {fingerprint(public)}")


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    {"genkey": genkey, "sign": sign, "verify": verify, "decrypt": decrypt_command}[command](*args)
