#!/usr/bin/env python3
"""Runs clang's thread-safety analysis (-Wthread-safety, as errors) over the server's sources.

The locks there are abseil Mutexes annotated with ABSL_GUARDED_BY and friends; GCC ignores the
annotations, clang checks them. Each source is compiled with the flags CMake recorded for it in
compile_commands.json, syntax only.

usage: check_thread_safety.py <build dir> <source>...
"""
import json
import pathlib
import shlex
import shutil
import subprocess
import sys

build = pathlib.Path(sys.argv[1])
sources = [str(pathlib.Path(s).resolve()) for s in sys.argv[2:]]
clang = shutil.which("clang++") or shutil.which("clang++-14")
if not clang:
    print("clang++ not found (scripts/install-deps.sh installs Debian's clang)")
    sys.exit(1)
commands = {str(pathlib.Path(e["directory"], e["file"]).resolve()): e for e in json.loads((build / "compile_commands.json").read_text())}
failed = 0
for source in sources:
    entry = commands.get(source)
    if entry is None:
        print(f"{source}: not in compile_commands.json")
        failed += 1
        continue
    args = shlex.split(entry["command"])
    while args and ("ccache" in pathlib.Path(args[0]).name or args[0].endswith(("c++", "g++"))):
        args.pop(0)  # the launcher and the compiler
    kept, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a == "-o":
            skip = True
        elif a != "-c" and a != entry["file"] and not a.endswith(".cpp"):
            kept.append(a)
    cmd = [clang, "-fsyntax-only", "-Wthread-safety", "-Werror=thread-safety", "-Wno-unknown-warning-option", *kept, source]
    result = subprocess.run(cmd, cwd=entry["directory"], capture_output=True, text=True)
    problems = [l for l in result.stderr.splitlines() if "thread-safety" in l or "error:" in l]
    status = "ok" if result.returncode == 0 else "FAILED"
    print(f"{pathlib.Path(source).name}: {status}")
    if result.returncode != 0:
        failed += 1
        print("\n".join(problems[:40]) or result.stderr[-4000:])
sys.exit(1 if failed else 0)
