#!/usr/bin/env python3
"""An independent implementation of cosign's key-based signature scheme, for arkham's interop test.

Written from the scheme's description (the simple-signing payload, the `sha256-HEX.sig` tag, the
`dev.cosignproject.cosign/signature` annotation), with python3's standard library for the OCI
distribution API (plain HTTP, anonymous: a loopback test registry) and `cryptography` (Debian's
python3-cryptography) for ECDSA P-256. It shares no code with arkham.

  cosign-interop.py genkey PREFIX                        -> PREFIX.key (PKCS#8), PREFIX.pub (SPKI)
  cosign-interop.py sign   HOST REPO DIGEST PRIVATE.pem  -> adds a signature layer
  cosign-interop.py verify HOST REPO DIGEST PUBLIC.pem   -> exit 0 iff a layer verifies with the key
"""

import base64
import hashlib
import json
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


def genkey(prefix):
    key = ec.generate_private_key(ec.SECP256R1())
    with open(prefix + ".key", "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    with open(prefix + ".pub", "wb") as f:
        f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo))


def sign(host, repo, digest, key_file):
    with open(key_file, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
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
    spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    fingerprint = "sha256:" + hashlib.sha256(spki).hexdigest()
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
        print(f"verified {host}/{repo}@{digest}: signed by {fingerprint}")
        return
    raise SystemExit(f"no signature by {fingerprint} covers {digest}")


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    {"genkey": genkey, "sign": sign, "verify": verify}[command](*args)
