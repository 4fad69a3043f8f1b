"""Runs a composite action (action.yml) the way the GitHub runner does, for the tests.

What the runner does and this does too (docs.github.com, "Metadata syntax for GitHub
Actions" and "Evaluate expressions in workflows and actions"):

- A step runs when its ``if:`` holds; an ``if:`` without a status function (``success()``,
  ``failure()``, ``always()``, ``cancelled()``) is ``success() && (...)``, so after a failed
  step only steps that ask for it run.
- ``${{ }}`` expressions in ``env:``, ``with:`` and the outputs' ``value:`` are evaluated
  against ``inputs`` (their defaults, then what the caller gives), ``github``, ``env`` and
  ``steps.<id>.outputs``; ``a || b`` and ``a && b`` yield an operand, a missing property is
  null, shown as ''. ``shell: bash`` runs ``bash --noprofile --norc -eo pipefail``.
- ``GITHUB_ACTION_PATH`` is the action's folder; ``GITHUB_OUTPUT`` is a fresh file per step.

``uses:`` steps are not run: each is recorded with its evaluated ``with:``, for the test to
look at (the artifact actions, setup-python and the AWS credentials action).
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TOKEN = re.compile(r"""\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>\d+(?:\.\d+)?)|(?P<op>&&|\|\||==|!=|!|\(|\)|,)
                       |(?P<name>[A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*)*))""", re.X)
STATUS = ("success()", "failure()", "always()", "cancelled()")


def _python(expr: str) -> str:
    """A GitHub expression as Python source over ``_get`` and a few functions."""
    out, pos = [], 0
    while pos < len(expr.rstrip()):
        m = TOKEN.match(expr, pos)
        assert m and m.end() > pos, f"cannot read {expr[pos:]!r}"
        pos = m.end()
        if m["str"]:
            out.append(repr(m["str"][1:-1].replace("''", "'")))
        elif m["num"]:
            out.append(m["num"])
        elif m["op"]:
            out.append({"&&": " and ", "||": " or ", "!": " not "}.get(m["op"], m["op"]))
        elif expr[pos:].lstrip().startswith("("):  # a function
            out.append(f"_fn_{m['name']}")
        elif m["name"] in ("true", "false", "null"):
            out.append({"true": "True", "false": "False", "null": "None"}[m["name"]])
        else:
            out.append(f"_get({m['name']!r})")
    return "".join(out)


@dataclass
class Step:
    name: str
    status: str  # "ran", "failed", "skipped", "recorded" (a `uses:` step)
    uses: str = ""
    with_: dict[str, str] = field(default_factory=dict)
    stdout: str = ""
    stderr: str = ""


@dataclass
class Composite:
    """One run of the action in ``workspace``, with ``env`` for its scripts."""

    path: Path
    workspace: Path
    env: dict[str, str]
    github: dict[str, Any]
    skip: tuple[str, ...] = ()  # run steps not to run (e.g. the install, tested on its own)
    steps: list[Step] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    _ctx: dict[str, Any] = field(default_factory=dict)

    def evaluate(self, expr: str) -> Any:
        def get(path: str) -> Any:
            value: Any = self._ctx
            for part in path.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            return value

        def fn_contains(haystack: Any, needle: Any) -> bool:
            if isinstance(haystack, list):
                return any(str(h).lower() == str(needle).lower() for h in haystack)
            return str(needle).lower() in str(haystack or "").lower()

        def fn_format(template: str, *args: Any) -> str:
            return re.sub(r"\{(\d+)\}", lambda m: self.text(args[int(m[1])]), template)

        names = {"_get": get, "_fn_contains": fn_contains, "_fn_fromJSON": json.loads,
                 "_fn_format": fn_format, "_fn_success": lambda: not self._failed,
                 "_fn_failure": lambda: self._failed, "_fn_always": lambda: True,
                 "_fn_cancelled": lambda: False}
        return eval(_python(expr), {"__builtins__": {}}, names)  # noqa: S307 - test input

    @staticmethod
    def text(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    def substitute(self, value: Any) -> str:
        if not isinstance(value, str):  # YAML's true/false/numbers reach the step as text
            return self.text(value)
        return re.sub(r"\$\{\{(.*?)\}\}", lambda m: self.text(self.evaluate(m[1])), str(value))

    @property
    def _failed(self) -> bool:
        return any(s.status == "failed" for s in self.steps)

    def run(self, inputs: dict[str, str]) -> Composite:
        action = yaml.safe_load(self.path.read_text())
        given = {k: str(v.get("default", "")) for k, v in action["inputs"].items()}
        unknown = set(inputs) - set(given)
        assert not unknown, f"the action has no input {sorted(unknown)}"
        self._ctx = {"inputs": {}, "github": self.github, "env": dict(self.env), "steps": {},
                     "runner": {"temp": self.env.get("RUNNER_TEMP", "")}}
        # defaults may hold expressions (github-token: ${{ github.token }})
        self._ctx["inputs"] = {k: self.substitute(v) for k, v in {**given, **inputs}.items()}
        outputs_dir = self.workspace.parent / "outputs"
        outputs_dir.mkdir(exist_ok=True)
        for index, spec in enumerate(action["runs"]["steps"]):
            name = spec.get("name") or spec.get("uses", "").split("@")[0]
            condition = str(spec.get("if", "success()")).strip()
            condition = condition.removeprefix("${{").removesuffix("}}").strip()
            if not any(s in condition for s in STATUS):
                condition = f"success() && ({condition})"
            if not self.evaluate(condition):
                self.steps.append(Step(name, "skipped"))
                continue
            if "uses" in spec:
                self.steps.append(Step(name, "recorded", spec["uses"], {
                    k: self.substitute(v) for k, v in (spec.get("with") or {}).items()}))
                continue
            if name in self.skip:
                self.steps.append(Step(name, "skipped"))
                continue
            out_file = outputs_dir / f"step-{index}"
            out_file.write_text("")
            env = {**self.env, "GITHUB_ACTION_PATH": str(self.path.parent),
                   "GITHUB_OUTPUT": str(out_file),
                   **{k: self.substitute(v) for k, v in (spec.get("env") or {}).items()}}
            assert spec["shell"] == "bash"
            script = self.workspace.parent / "step.sh"
            script.write_text(spec["run"])
            proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail",
                                   str(script)], cwd=self.workspace, capture_output=True,
                                  text=True, timeout=180, env=env)
            self.steps.append(Step(name, "ran" if proc.returncode == 0 else "failed",
                                   stdout=proc.stdout, stderr=proc.stderr))
            if "id" in spec:
                pairs = [line.split("=", 1) for line in out_file.read_text().splitlines()]
                self._ctx["steps"][spec["id"]] = {"outputs": dict(pairs)}
        self.outputs = {k: self.substitute(v["value"]) for k, v in action["outputs"].items()}
        return self

    def step(self, name: str) -> Step:
        (found,) = [s for s in self.steps if s.name == name]
        return found

    @property
    def failed(self) -> bool:
        return self._failed

    @property
    def stdout(self) -> str:
        return "".join(s.stdout for s in self.steps)


FAKE_GH = '''#!{python}
"""A fake `gh`: records each call (and the body it posts) and answers reads from JSON."""
import json, os, subprocess, sys
args = sys.argv[1:]
entry = {{"argv": args}}
for i, a in enumerate(args):
    if a == "--body-file":
        entry["body"] = open(args[i + 1]).read()
    elif a.startswith("body=@"):
        entry["body"] = open(a[6:]).read()
with open(os.environ["FAKE_GH_LOG"], "a") as log:
    log.write(json.dumps(entry) + "\\n")
data = None
if args[0] == "api" and "--method" not in args:
    data = json.loads(os.environ.get("FAKE_GH_COMMENTS", "[]"))
elif args[:2] == ["issue", "list"]:
    data = json.loads(os.environ.get("FAKE_GH_ISSUES", "[]"))
if data is not None:
    text = json.dumps(data)
    if "--jq" in args:
        text = subprocess.run(["jq", "-r", args[args.index("--jq") + 1]], input=text,
                              capture_output=True, text=True, check=True).stdout
    sys.stdout.write(text)
'''


def runner_commands(output: str) -> list[str]:
    """The workflow commands the GitHub runner acts on in ``output``: a line that begins
    with ``::`` after its leading blanks, or holds ``##[`` anywhere (actions/runner,
    ActionCommand.TryParseV2 / TryParse), except while ``::stop-commands::TOKEN`` is in force
    (until a ``::TOKEN::`` line)."""
    acted, stopped = [], ""
    for line in output.splitlines():
        body = line.lstrip()
        v2 = re.match(r"::([^:\s]+)[^:]*::(.*)", body)
        v1 = re.search(r"##\[([^\] ]+)[^\]]*\](.*)", line)
        name = (v2 or v1).group(1) if (v2 or v1) else None
        if name is None:
            continue
        if stopped:
            if name == stopped:
                stopped = ""
            continue
        if name == "stop-commands":
            stopped = (v2 or v1).group(2)  # type: ignore[union-attr]
            continue
        acted.append(body if v2 else line)
    return acted
