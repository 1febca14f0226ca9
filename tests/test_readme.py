"""The README's Python examples run as written, and its first two commands are the CI's."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_readme():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        return f.read()


def test_python_examples_in_the_readme_run():
    blocks = re.findall(r"```python\n(.*?)```", read_readme(), flags=re.S)
    assert blocks, "the README has no Python example"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def test_readme_starts_with_the_install_and_test_commands():
    first_block = re.search(r"```bash\n(.*?)```", read_readme(), flags=re.S).group(1).strip().splitlines()
    assert first_block == ["pip install . && python -m minires train", 'pip install ".[dev,interop,mpi]" && python -m pytest']
