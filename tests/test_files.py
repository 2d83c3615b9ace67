"""Safe names and the out-folder check of :mod:`cinerecon.files`."""

from __future__ import annotations

import pytest

from cinerecon.errors import ConfigError
from cinerecon.files import inside, safe_name


@pytest.mark.parametrize("text, expected", [
    ("sax", "sax"), ("R08_ktGaussian", "R08_ktGaussian"), ("P001/slice03", "P001_slice03"),
    ("../../etc/passwd", "etc_passwd"), ("..", "unnamed"), (".hidden.h5", "hidden.h5"), ("a\\b", "a_b"),
    ("a/../b", "a_._b"), ("", "unnamed"), ("x y:z", "x_y_z"),
])
def test_safe_name(text, expected):
    name = safe_name(text)
    assert name == expected
    assert "/" not in name and "\\" not in name and ".." not in name and not name.startswith(".")


def test_inside_refuses_paths_leaving_the_folder(tmp_path):
    out = tmp_path / "out"
    assert inside(out, out / "a" / "b.h5") == out / "a" / "b.h5"
    with pytest.raises(ConfigError, match=r"outside .*out"):
        inside(out, out / ".." / "x.h5")
    (tmp_path / "elsewhere").mkdir()
    out.mkdir()
    (out / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="link"):
        inside(out, out / "link" / "x.h5")


def test_atomic_output_onto_a_folder_names_the_folder(tmp_path):
    from cinerecon.errors import OutputExistsError
    from cinerecon.files import atomic_write_text

    (tmp_path / "out.pt").mkdir()
    with pytest.raises(OutputExistsError, match=r"out\.pt is a folder"):
        atomic_write_text(tmp_path / "out.pt", "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.pt"]  # no temporary file left behind


def test_a_dangling_link_at_an_output_path_is_the_users(tmp_path):
    from cinerecon.errors import OutputExistsError
    from cinerecon.files import atomic_write_text

    link = tmp_path / "out.gif"
    link.symlink_to(tmp_path / "elsewhere" / "missing.gif")
    with pytest.raises(OutputExistsError, match="already exists"):
        atomic_output_overwrite_false(link)
    assert link.is_symlink()
    atomic_write_text(link, "x")  # overwrite=True replaces the link itself, never writes through it
    assert not link.is_symlink() and link.read_text() == "x" and not (tmp_path / "elsewhere").exists()


def atomic_output_overwrite_false(path):
    from cinerecon.files import atomic_output

    with atomic_output(path, overwrite=False) as tmp:
        tmp.write_text("y")


def test_check_can_write_names_a_folder_that_cannot_be_written(tmp_path, monkeypatch):
    import cinerecon.files as files

    files.check_can_write(tmp_path / "new" / "deeper")  # a folder to be made below a writable one: fine
    assert not (tmp_path / "new").exists() and not list(tmp_path.iterdir())  # the probe leaves nothing

    def read_only(path):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(files, "_create_temp", read_only)
    with pytest.raises(ConfigError, match="cannot write to .*out: Read-only file system"):
        files.check_can_write(tmp_path / "out")
