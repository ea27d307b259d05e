#!/usr/bin/env python3
"""Checks the deployment recipes in deploy/ against the program they run.

    check_deploy.py BINARY [--static-binary PATH]

- docker-compose.yml parses, and every integrator command in it is a subcommand of BINARY with flags that
  subcommand accepts (read from `BINARY --help` and `BINARY <subcommand> --help`);
- the systemd units pass `systemd-analyze verify` with no complaint at all, and their ExecStart lines pass the
  same command check;
- with --static-binary: every library that binary links is one the Dockerfile's runtime stage provides.
Exits non-zero naming each problem.
"""
import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"

# Libraries of debian:bookworm-slim itself, and of the packages the Dockerfile's runtime stage installs.
BASE_IMAGE_LIBRARIES = {
    "linux-vdso.so.1", "ld-linux-x86-64.so.2", "libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1",
    "libutil.so.1", "libgcc_s.so.1", "libstdc++.so.6", "libz.so.1",
}
PACKAGE_LIBRARIES = {
    "librabbitmq4": {"librabbitmq.so.4"},
    # librabbitmq4 depends on libssl3.
    "libssl3": {"libssl.so.3", "libcrypto.so.3"},
}


def help_text(binary, *subcommand):
    result = subprocess.run([binary, *subcommand, "--help"], capture_output=True, text=True, timeout=60)
    return result.stdout + result.stderr


def subcommands(binary):
    text = help_text(binary)
    section = text.split("SUBCOMMANDS:", 1)[1] if "SUBCOMMANDS:" in text else ""
    return {match.group(1) for match in re.finditer(r"^  ([a-z][a-z-]*)\b", section, re.MULTILINE)}


def check_command(binary, known, words, where):
    """The problems with running `integrator <words>`."""
    if not words:
        return [f"{where}: no command"]
    subcommand = words[0]
    if subcommand not in known:
        return [f"{where}: '{subcommand}' is not a subcommand of integrator (it has: {', '.join(sorted(known))})"]
    accepted = set(re.findall(r"(--[a-z][a-z0-9-]*)", help_text(binary, subcommand)))
    return [f"{where}: 'integrator {subcommand}' has no option {word}" for word in words[1:]
            if word.startswith("--") and word.split("=", 1)[0] not in accepted]


def check_compose(binary, known):
    problems = []
    try:
        compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    except yaml.YAMLError as error:
        return [f"docker-compose.yml does not parse: {error}"]
    services = compose.get("services") or {}
    integrator_services = [name for name, service in services.items() if str(service.get("image", "")).startswith("integrator")]
    if not integrator_services:
        problems.append("docker-compose.yml runs no integrator service")
    for name in integrator_services:
        command = services[name].get("command")
        if isinstance(command, str):
            command = command.split()
        problems += check_command(binary, known, command or [], f"docker-compose.yml service {name}")
        for dependency, condition in (services[name].get("depends_on") or {}).items():
            if dependency not in services:
                problems.append(f"docker-compose.yml service {name} depends on '{dependency}', which is not a service")
    for required in ("serve", "migrate"):
        if not any((services[name].get("command") or [None])[0] == required for name in integrator_services):
            problems.append(f"docker-compose.yml has no service running 'integrator {required}'")
    for role, least in (("beat", 2), ("worker", 2)):
        count = sum(1 for name in integrator_services if (services[name].get("command") or [None])[0] == role)
        if count < least:
            problems.append(f"docker-compose.yml runs {count} '{role}' services; the fleet needs {least}")
    return problems


def check_units(binary, known):
    problems = []
    units = sorted((DEPLOY / "systemd").glob("*.service"))
    if not units:
        return ["deploy/systemd has no units"]
    if shutil.which("systemd-analyze") is None:
        return ["systemd-analyze is not installed (Debian package systemd)"]
    with tempfile.TemporaryDirectory() as directory:
        names = []
        for unit in units:
            text = unit.read_text()
            for line in text.splitlines():
                if line.startswith("ExecStart="):
                    words = line.split("=", 1)[1].split()
                    if words[0] != "/usr/local/bin/integrator":
                        problems.append(f"{unit.name}: ExecStart runs {words[0]}, not /usr/local/bin/integrator")
                    # ${VARIABLE} arguments come from the environment file; check the literal words only.
                    problems += check_command(binary, known, [w for w in words[1:] if not w.startswith("${")], unit.name)
            # Verify against the binary at hand, and without the environment files of a real host.
            text = text.replace("/usr/local/bin/integrator", str(Path(binary).resolve()))
            text = re.sub(r"^EnvironmentFile=(?!-)", "EnvironmentFile=-", text, flags=re.MULTILINE)
            name = unit.name.replace("@.service", "@check.service")
            (Path(directory) / unit.name).write_text(text)
            if name != unit.name:
                (Path(directory) / name).write_text(text)
            names.append(name)
        result = subprocess.run(
            ["systemd-analyze", "verify", "--man=no", *names], cwd=directory, capture_output=True, text=True, timeout=120)
        complaints = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
        if result.returncode != 0 or complaints:
            problems += [f"systemd-analyze verify: {line}" for line in complaints] or ["systemd-analyze verify failed"]
    return problems


def check_libraries(static_binary):
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    runtime = dockerfile.rsplit("FROM ", 1)[1]
    installed = set(re.findall(r"\b(librabbitmq4|ca-certificates|tzdata)\b", runtime))
    provided = set(BASE_IMAGE_LIBRARIES)
    for package, libraries in PACKAGE_LIBRARIES.items():
        if package in installed or (package == "libssl3" and "librabbitmq4" in installed):
            provided |= libraries
    result = subprocess.run(["ldd", static_binary], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        return [f"ldd {static_binary} failed: {result.stderr.strip()}"]
    linked = {line.split()[0].rsplit("/", 1)[-1] for line in result.stdout.splitlines() if line.strip()}
    return [f"{static_binary} links {library}, which the Dockerfile's runtime stage does not provide"
            for library in sorted(linked - provided)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("binary", help="an integrator binary (any build) whose --help is the reference")
    parser.add_argument("--static-binary", help="a release binary built with --static-swift-stdlib, for the ldd check")
    arguments = parser.parse_args()
    known = subcommands(arguments.binary)
    if not known:
        print(f"check_deploy: {arguments.binary} --help lists no subcommands", file=sys.stderr)
        return 1
    problems = check_compose(arguments.binary, known) + check_units(arguments.binary, known)
    checked = "compose file, systemd units"
    if arguments.static_binary:
        problems += check_libraries(arguments.static_binary)
        checked += ", libraries of the static binary"
    for problem in problems:
        print(f"check_deploy: {problem}", file=sys.stderr)
    if not problems:
        print(f"deploy recipes: OK ({checked})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
