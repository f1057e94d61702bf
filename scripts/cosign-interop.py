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

Keyless (what `cosign sign` without `--key` writes), against a test Sigstore made here: a root CA
(P-384) and an intermediate like Fulcio's, a Rekor log key and a certificate transparency log key
(P-256), and their `trusted_root.json`. Leaves embed an SCT (RFC 6962) as Fulcio's do.

  cosign-interop.py sigstore-init DIR          -> DIR/trusted_root.json and the CA and log keys
  cosign-interop.py sign-keyless HOST REPO DIGEST DIR [options]
      --subject S --issuer I   the leaf's SAN (an email if it has `@` and no `:`, else a URI) and
                               OIDC issuer (extension 1.3.6.1.4.1.57264.1.8; --v1-issuer: .1.1)
      --ca OTHER_DIR           issue the leaf from another Sigstore's CA (not in DIR's root)
      --bad-set                the SET signs another integratedTime than the bundle says
      --expired                logged after the leaf's notAfter
      --server-auth            the leaf's extended key usage is serverAuth, not codeSigning
      --foreign-signature      the payload signed (and logged) by a key other than the leaf's
      --no-sct / --bad-sct     no embedded SCT / one whose signature covers another timestamp
      --out FILE               write the layer ({payload, annotations} JSON) instead of pushing
"""

import base64
import datetime
import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.request

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

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


def simple_signing(host, repo, digest):
    return json.dumps({
        "critical": {
            "identity": {"docker-reference": f"{host}/{repo}"},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": None,
    }, separators=(",", ":")).encode()


def sign(host, repo, digest, key_file):
    key = load_private(key_file)
    payload = simple_signing(host, repo, digest)
    signature = base64.b64encode(key.sign(payload, ec.ECDSA(hashes.SHA256()))).decode()
    push_layer(host, repo, digest, payload, {ANNOTATION: signature})


def push_layer(host, repo, digest, payload, annotations):
    """Adds a simple-signing layer to the signature manifest of DIGEST."""
    layer = put_blob(host, repo, payload)
    layer["mediaType"] = SIMPLESIGNING
    layer["annotations"] = annotations
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



CERTIFICATE = "dev.sigstore.cosign/certificate"
CHAIN = "dev.sigstore.cosign/chain"
BUNDLE = "dev.sigstore.cosign/bundle"
ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")


def pem_write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def private_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_cert(path):
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


def spki_der(public_key):
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def ca_cert(subject_key, issuer_key, subject, issuer, path_length, start, end, code_signing):
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "arkham-test"),
                                        x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "arkham-test"),
                                       x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
               .public_key(subject_key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(end)
               .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False,
                                            key_agreement=False, key_cert_sign=True, crl_sign=True,
                                            encipher_only=False, decipher_only=False), critical=True))
    if code_signing:
        # Fulcio's intermediate carries the code-signing EKU too.
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]),
                                        critical=False)
    return builder.sign(issuer_key, hashes.SHA384())


def rfc3339(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def sigstore_init(directory):
    """A test Sigstore: root CA, intermediate (like Fulcio's), Rekor key, trusted_root.json."""
    os.makedirs(directory, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=3650)
    root_key = ec.generate_private_key(ec.SECP384R1())
    root = ca_cert(root_key, root_key, "sigstore", "sigstore", 1, start, end, False)
    intermediate_key = ec.generate_private_key(ec.SECP384R1())
    intermediate = ca_cert(intermediate_key, root_key, "sigstore-intermediate", "sigstore", 0,
                           start, end, True)
    rekor_key = ec.generate_private_key(ec.SECP256R1())
    ct_key = ec.generate_private_key(ec.SECP256R1())
    pem_write(os.path.join(directory, "ct.key"), private_pem(ct_key))
    pem_write(os.path.join(directory, "intermediate.key"), private_pem(intermediate_key))
    pem_write(os.path.join(directory, "rekor.key"), private_pem(rekor_key))
    pem_write(os.path.join(directory, "intermediate.pem"), intermediate.public_bytes(serialization.Encoding.PEM))
    pem_write(os.path.join(directory, "root.pem"), root.public_bytes(serialization.Encoding.PEM))
    rekor_spki = spki_der(rekor_key.public_key())
    ct_spki = spki_der(ct_key.public_key())
    der = lambda c: base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()
    trusted_root = {
        "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "tlogs": [{
            "baseUrl": "https://rekor.invalid",
            "hashAlgorithm": "SHA2_256",
            "publicKey": {"rawBytes": base64.b64encode(rekor_spki).decode(),
                          "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                          "validFor": {"start": rfc3339(start)}},
            "logId": {"keyId": base64.b64encode(hashlib.sha256(rekor_spki).digest()).decode()},
        }],
        "certificateAuthorities": [{
            "subject": {"organization": "arkham-test", "commonName": "sigstore"},
            "uri": "https://fulcio.invalid",
            "certChain": {"certificates": [{"rawBytes": der(intermediate)}, {"rawBytes": der(root)}]},
            "validFor": {"start": rfc3339(start)},
        }],
        "ctlogs": [{
            "baseUrl": "https://ctfe.invalid",
            "hashAlgorithm": "SHA2_256",
            "publicKey": {"rawBytes": base64.b64encode(ct_spki).decode(),
                          "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                          "validFor": {"start": rfc3339(start)}},
            "logId": {"keyId": base64.b64encode(hashlib.sha256(ct_spki).digest()).decode()},
        }],
        "timestampAuthorities": [],
    }
    with open(os.path.join(directory, "trusted_root.json"), "w") as f:
        json.dump(trusted_root, f, indent=2)
    print(f"made a test Sigstore in {directory}")


def der_tlv(tag, data):
    if len(data) < 128:
        return bytes([tag, len(data)]) + data
    length = len(data).to_bytes((len(data).bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + data


def utf8_string_der(text):
    return der_tlv(0x0C, text.encode())


SCT_LIST = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")


def embedded_sct(builder, intermediate, intermediate_key, ct_key, bad=False):
    """The SCT list extension a CT log returns for the precertificate `builder` makes (RFC 6962
    3.2: the TBS without the SCT extension, and the issuer's key hash)."""
    precert = builder.sign(intermediate_key, hashes.SHA384()).tbs_certificate_bytes
    issuer_key_hash = hashlib.sha256(spki_der(intermediate.public_key())).digest()
    timestamp = int(time.time() * 1000)
    u16 = lambda n: n.to_bytes(2, "big")
    signed = (bytes([0, 0]) + (timestamp + (1 if bad else 0)).to_bytes(8, "big") + u16(1)
              + issuer_key_hash + len(precert).to_bytes(3, "big") + precert + u16(0))
    signature = ct_key.sign(signed, ec.ECDSA(hashes.SHA256()))
    log_id = hashlib.sha256(spki_der(ct_key.public_key())).digest()
    sct = (bytes([0]) + log_id + timestamp.to_bytes(8, "big") + u16(0)
           + bytes([4, 3]) + u16(len(signature)) + signature)
    items = u16(len(sct)) + sct
    return x509.UnrecognizedExtension(SCT_LIST, der_tlv(0x04, u16(len(items)) + items))


def keyless_layer(host, repo, digest, directory, subject, issuer, ca=None, bad_set=False,
                  expired=False, v1_issuer=False, server_auth=False, foreign_signature=False,
                  no_sct=False, bad_sct=False):
    """The payload and annotations of a keyless signature layer, as cosign writes them."""
    ca = ca or directory
    intermediate_key = load_private(os.path.join(ca, "intermediate.key"))
    intermediate = load_cert(os.path.join(ca, "intermediate.pem"))
    root = load_cert(os.path.join(ca, "root.pem"))
    rekor_key = load_private(os.path.join(directory, "rekor.key"))
    ct_key = load_private(os.path.join(directory, "ct.key"))
    # Fulcio's leaf: an ephemeral P-256 key, ten minutes, no subject, identity in the SAN.
    key = ec.generate_private_key(ec.SECP256R1())
    now = int(time.time())
    not_before = datetime.datetime.fromtimestamp(now - 60, datetime.timezone.utc)
    not_after = datetime.datetime.fromtimestamp(now + 540, datetime.timezone.utc)
    san = (x509.RFC822Name(subject) if "@" in subject and ":" not in subject
           else x509.UniformResourceIdentifier(subject))
    issuer_extension = (x509.UnrecognizedExtension(ISSUER_V1, issuer.encode()) if v1_issuer
                        else x509.UnrecognizedExtension(ISSUER_V2, utf8_string_der(issuer)))
    builder = (x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(intermediate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=False, crl_sign=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server_auth
                                                  else ExtendedKeyUsageOID.CODE_SIGNING]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName([san]), critical=True)
            .add_extension(issuer_extension, critical=False))
    if not no_sct:
        builder = builder.add_extension(
            embedded_sct(builder, intermediate, intermediate_key, ct_key, bad_sct), critical=False)
    leaf = builder.sign(intermediate_key, hashes.SHA384())
    leaf_pem = leaf.public_bytes(serialization.Encoding.PEM)
    payload = simple_signing(host, repo, digest)
    signer = ec.generate_private_key(ec.SECP256R1()) if foreign_signature else key
    signature = signer.sign(payload, ec.ECDSA(hashes.SHA256()))
    body = {
        "apiVersion": "0.0.1",
        "kind": "hashedrekord",
        "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()}},
            "signature": {"content": base64.b64encode(signature).decode(),
                          "publicKey": {"content": base64.b64encode(leaf_pem).decode()}},
        },
    }
    integrated_time = now + 600 if expired else now
    entry = {
        "body": base64.b64encode(json.dumps(body, separators=(",", ":")).encode()).decode(),
        "integratedTime": integrated_time,
        "logIndex": 4242,
        "logID": hashlib.sha256(spki_der(rekor_key.public_key())).hexdigest(),
    }
    signed = dict(entry, integratedTime=integrated_time + 1) if bad_set else entry
    # Canonical JSON (RFC 8785 agrees for this content): sorted keys, no whitespace.
    canonical = json.dumps(signed, sort_keys=True, separators=(",", ":")).encode()
    set_signature = rekor_key.sign(canonical, ec.ECDSA(hashes.SHA256()))
    bundle = {"SignedEntryTimestamp": base64.b64encode(set_signature).decode(), "Payload": entry}
    chain = (intermediate.public_bytes(serialization.Encoding.PEM)
             + root.public_bytes(serialization.Encoding.PEM))
    annotations = {
        ANNOTATION: base64.b64encode(signature).decode(),
        CERTIFICATE: leaf_pem.decode(),
        CHAIN: chain.decode(),
        BUNDLE: json.dumps(bundle),
    }
    return payload, annotations


def sign_keyless(host, repo, digest, directory, *options):
    args = {"subject": "ci@example.com", "issuer": "https://token.example"}
    flags = {"--bad-set": "bad_set", "--expired": "expired", "--v1-issuer": "v1_issuer",
             "--server-auth": "server_auth", "--foreign-signature": "foreign_signature",
             "--no-sct": "no_sct", "--bad-sct": "bad_sct"}
    out = None
    rest = list(options)
    while rest:
        option = rest.pop(0)
        if option in flags:
            args[flags[option]] = True
        elif option in ("--subject", "--issuer", "--ca"):
            args[option[2:]] = rest.pop(0)
        elif option == "--out":
            out = rest.pop(0)
        else:
            raise SystemExit(f"unknown option {option}")
    payload, annotations = keyless_layer(host, repo, digest, directory, **args)
    if out:
        with open(out, "w") as f:
            json.dump({"payload": payload.decode(), "annotations": annotations}, f, indent=2)
        print(f"wrote a keyless signature layer to {out}")
    else:
        push_layer(host, repo, digest, payload, annotations)



if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    {"genkey": genkey, "sign": sign, "verify": verify, "decrypt": decrypt_command,
     "sigstore-init": sigstore_init, "sign-keyless": sign_keyless}[command](*args)
