"""certs: throwaway certificate authorities and server certificates for the
integration suite, made with the openssl command at test time.

Each CA lives in a directory of the test's own (pytest's tmp_path): a
self-signed P-256 certificate valid for two days, and the leaf certificates
it issues for the names and addresses a test asks for. Nothing here is
committed key material: every run makes new keys and forgets them with its
temporary directory. Knows nothing about proxyfs.
"""

import os
import secrets
import subprocess

OPENSSL = "openssl"
DAYS = "2"


def _openssl(args, cwd):
    p = subprocess.run([OPENSSL, *args], cwd=cwd, capture_output=True, timeout=60)
    if p.returncode != 0:
        raise RuntimeError("openssl %s failed (%d): %s"
                           % (args[0], p.returncode, p.stderr.decode(errors="replace")))


def _ec_key_args(keyout):
    return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", keyout]


class CA:
    """A certificate authority: cert is its PEM certificate (what a client
    trusts), key its private key."""

    def __init__(self, tmp, name):
        self.dir = os.path.join(tmp, "ca-" + name)
        os.makedirs(self.dir, exist_ok=True)
        self.name = name
        self.cert = os.path.join(self.dir, "ca.pem")
        self.key = os.path.join(self.dir, "ca.key")
        _openssl(["req", "-x509", *_ec_key_args(self.key), "-out", self.cert, "-days", DAYS,
                  "-subj", "/CN=proxyfs test CA %s" % name,
                  "-addext", "basicConstraints=critical,CA:TRUE",
                  "-addext", "keyUsage=critical,keyCertSign,cRLSign"], self.dir)

    def issue(self, name, alt_names):
        """A server certificate for alt_names (["IP:127.0.0.1",
        "DNS:localhost"]), signed by this CA; returns (cert, key) paths."""
        key = os.path.join(self.dir, name + ".key")
        csr = os.path.join(self.dir, name + ".csr")
        cert = os.path.join(self.dir, name + ".pem")
        ext = os.path.join(self.dir, name + ".ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\n"
                    "keyUsage=critical,digitalSignature\n"
                    "extendedKeyUsage=serverAuth\n"
                    "subjectAltName=%s\n" % ",".join(alt_names))
        _openssl(["req", "-new", *_ec_key_args(key), "-out", csr, "-subj", "/CN=" + name],
                 self.dir)
        _openssl(["x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key,
                  "-set_serial", str(secrets.randbits(63)), "-days", DAYS, "-extfile", ext,
                  "-out", cert], self.dir)
        return cert, key
