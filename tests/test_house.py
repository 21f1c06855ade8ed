"""The house rules, read from the source: short functions and classes, a thin app, no library
module that leans on a command, and documentation whose links all lead somewhere."""

import ast
import re
from pathlib import Path

from .conftest import ROOT

MAX_FUNCTION_LINES, MAX_CLASS_LINES = 60, 150
COMMANDS = {"diffusion.bench", "diffusion.evaluate", "diffusion.sample"}  # command-line modules, not libraries


def source_files() -> list[Path]:
    """Every Python file of the project outside tests/ (and outside hidden folders such as .venv, and node_modules)."""
    return sorted(p for p in ROOT.rglob("*.py") if not ({"tests", "build", "node_modules"} & set(p.relative_to(ROOT).parts)
                                                         or any(part.startswith(".") for part in p.relative_to(ROOT).parts)))


def lengths(paths: list[Path], root: Path = ROOT) -> list[tuple[int, str, str]]:
    """(lines, "function" or "class", where) of every function and class in paths, longest first."""
    found = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                kind = "class" if isinstance(node, ast.ClassDef) else "function"
                found.append((node.end_lineno - node.lineno + 1, kind, f"{path.relative_to(root)}:{node.lineno} {node.name}"))
    return sorted(found, reverse=True)


def too_long(paths: list[Path], root: Path = ROOT) -> list[str]:
    return [f"{where}: a {kind} of {lines} lines" for lines, kind, where in lengths(paths, root)
            if lines > (MAX_CLASS_LINES if kind == "class" else MAX_FUNCTION_LINES)]


def test_no_function_over_60_lines_and_no_class_over_150():
    found = lengths(source_files())
    print("the five longest:", *(f"{lines:4d} {kind:8s} {where}" for lines, kind, where in found[:5]), sep="\n  ")
    assert not too_long(source_files())


def test_the_length_check_catches_a_long_function_and_class(tmp_path):
    long_function = "def f():\n" + "    x = 1\n" * MAX_FUNCTION_LINES
    long_class = "class C:\n" + "".join(f"    def m{i}(self):\n        pass\n" for i in range(MAX_CLASS_LINES // 2))
    (tmp_path / "long.py").write_text(long_function + "\n\n" + long_class)
    assert too_long([tmp_path / "long.py"], tmp_path) == [f"long.py:{MAX_FUNCTION_LINES + 4} C: a class of {MAX_CLASS_LINES + 1} lines",
                                                          f"long.py:1 f: a function of {MAX_FUNCTION_LINES + 1} lines"]


def imported_modules(path: Path) -> set[str]:
    """The absolute names of the modules a file imports (relative imports resolved within diffusion/)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = "diffusion" if node.level and path.parent.name == "diffusion" else (node.module or "")
            module = f"{base}.{node.module}" if node.level and node.module else base
            names |= {module} | {f"{module}.{alias.name}" for alias in node.names}
    return names


def test_no_module_imports_a_command_line_module():
    leaning = {f"{path.relative_to(ROOT)} imports {name}" for path in source_files()
               for name in imported_modules(path) & COMMANDS}
    assert not leaning


def test_the_entry_point_is_thin_and_each_tab_module_small():
    assert len((ROOT / "app.py").read_text().splitlines()) <= 80
    for module in (ROOT / "webapp").glob("*.py"):
        assert len(module.read_text().splitlines()) <= 250, module.name


def anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", markdown, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


def test_the_readme_is_short_and_every_documentation_link_leads_somewhere():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)  # code is not links
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            file, _, anchor = target.partition("#")
            linked = (page.parent / file).resolve() if file else page
            if not linked.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text()):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert len(pages) > 1, "the details live in docs/"
    assert not broken


def test_the_import_check_sees_a_library_module_leaning_on_a_command(tmp_path):
    module = tmp_path / "diffusion" / "helper.py"
    module.parent.mkdir()
    module.write_text("from .bench import timed_runs\nimport diffusion.sample\nfrom . import io\n")
    assert imported_modules(module) & COMMANDS == {"diffusion.bench", "diffusion.sample"}


def test_every_module_and_tab_is_named_in_how_it_works_and_the_readme_map():
    """docs/how-it-works.md names every module of the library and the app, and every tab by its title;
    the README's map names every module."""
    page = (ROOT / "docs" / "how-it-works.md").read_text()
    readme = (ROOT / "README.md").read_text()
    readme_map = readme[readme.index("## How it works"):].split("```")[1]
    modules = sorted((ROOT / "diffusion").glob("*.py")) + sorted((ROOT / "webapp").glob("*.py"))
    assert len(modules) > 30, "the modules are found"
    unnamed = [str(path.relative_to(ROOT)) for path in modules if str(path.relative_to(ROOT)) not in page]
    assert not unnamed, f"not in docs/how-it-works.md: {unnamed}"
    off_the_map = [path.stem for path in modules if path.stem != "__init__" and not re.search(rf"\b{path.stem}\b", readme_map)]
    assert not off_the_map, f"not in the README's map: {off_the_map}"
    tabs = re.findall(r'gr\.Tab\("([^"]+)"', "".join(path.read_text() for path in (ROOT / "webapp").glob("*.py")))
    assert len(tabs) >= 8 and not [tab for tab in tabs if f"({tab}" not in page], tabs
