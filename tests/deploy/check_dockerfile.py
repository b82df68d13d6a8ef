#!/usr/bin/env python3
"""Checks of the Dockerfile and .dockerignore that hadolint does not make:
multi-stage rust:1-bookworm -> distroless cc nonroot, `cargo build --release
--locked` of the chainpulse binary, user 65532, ports 4317 4318 9464, exec-form
ENTRYPOINT ["/chainpulse"], and a .dockerignore that keeps target/, venvs and
.git out of the build context. (The image itself cannot be built here: no
container engine.)"""
import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def main():
    text = (ROOT / "Dockerfile").read_text()
    # join continuation lines, drop comments
    logical = re.sub(r"\\\n", " ", text)
    lines = [ln.strip() for ln in logical.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", "\n".join(lines), re.M))
    resolve = lambda s: re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), s)  # noqa: E731
    froms = [resolve(ln.split()[1]) for ln in lines if ln.startswith("FROM ")]
    problems = []
    if len(froms) < 2:
        problems.append("not a multi-stage build")
    if not froms or not froms[0].startswith("rust:1-bookworm"):
        problems.append(f"builder stage must be rust:1-bookworm, got {froms[:1]}")
    final = froms[-1] if froms else ""
    if not (final.startswith("gcr.io/distroless/cc-debian12") and final.endswith(":nonroot")) \
            and "musl" not in text:
        problems.append(f"runtime must be gcr.io/distroless/cc-debian12:nonroot (or a musl static build), got {final}")
    if not re.search(r"cargo build\b[^\n]*--release[^\n]*--locked|cargo build\b[^\n]*--locked[^\n]*--release", logical):
        problems.append("no `cargo build --release --locked`")
    if "--bin chainpulse" not in logical:
        problems.append("does not build the chainpulse binary explicitly (--bin chainpulse)")
    users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    if not users or users[-1].split(":")[0] != "65532":
        problems.append(f"final USER must be 65532, got {users[-1:] or None}")
    exposed = set()
    for ln in lines:
        if ln.startswith("EXPOSE "):
            exposed |= {p.split("/")[0] for p in ln.split()[1:]}
    if exposed != {"4317", "4318", "9464"}:
        problems.append(f"EXPOSE {sorted(exposed)} != 4317 4318 9464")
    eps = [ln[len("ENTRYPOINT "):] for ln in lines if ln.startswith("ENTRYPOINT ")]
    try:
        ep = json.loads(eps[-1]) if eps else None
    except ValueError:
        ep = None
    if ep != ["/chainpulse"]:
        problems.append(f'ENTRYPOINT must be exec form ["/chainpulse"], got {eps[-1:] or None}')
    if any(ln.startswith("RUN ") for ln in lines[[i for i, ln in enumerate(lines) if ln.startswith("FROM ")][-1]:]):
        problems.append("RUN in the final stage: distroless has no shell")

    ignore = (ROOT / ".dockerignore").read_text().split()
    for must in ("target", ".git", ".venv"):
        if must not in ignore:
            problems.append(f".dockerignore lacks {must}")
    for must_not in ("src", "Cargo.toml", "Cargo.lock", "proto", "build.rs"):
        if must_not in ignore:
            problems.append(f".dockerignore excludes {must_not}, which the build needs")

    for p in problems:
        print(f"FAIL {p}")
    print("Dockerfile: " + ("OK" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
