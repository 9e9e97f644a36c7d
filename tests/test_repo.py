from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text().splitlines()
    start = readme.index("```bash")
    commands = readme[start + 1 : start + 3]
    assert "pytest" in commands[1] and "fastdaf" in commands[0]
    ci_lines = [
        line
        for line in (REPO / ".ci" / "run").read_text().splitlines()
        if line and not line.startswith(("#", "set ", "cd "))
    ]
    assert ci_lines == [commands[1]]


def test_kernels_folder_is_installed_as_fastdaf_kernels():
    import fastdaf.kernels

    assert Path(fastdaf.kernels.__file__).resolve().parent == REPO / "kernels"


def test_code_passes_ruff():
    """The lint configured in pyproject.toml ([tool.ruff]) holds for the whole tree; .ci/run runs it through this test."""
    import shutil
    import subprocess
    import sys

    ruff = Path(sys.executable).with_name("ruff")
    ruff = str(ruff) if ruff.exists() else shutil.which("ruff")
    assert ruff, "ruff is not installed: pip install -e '.[test]'"
    done = subprocess.run([ruff, "check", "--no-cache", str(REPO)], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
