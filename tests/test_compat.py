"""Old import paths (before the layout by role) still work, with a DeprecationWarning."""
import subprocess
import sys

from mphate._compat import MOVED_MODULES



def test_every_old_path_warns_naming_its_new_home():
    # a fresh interpreter: each warning fires once per process, at the first import
    code = (
        "import importlib, warnings\n"
        "from mphate._compat import MOVED_MODULES\n"
        "for old, new in sorted(MOVED_MODULES.items()):\n"
        "    importlib.import_module(new)\n"
        "    with warnings.catch_warnings(record=True) as caught:\n"
        "        warnings.simplefilter('always')\n"
        "        module = importlib.import_module(old)\n"
        "    messages = [str(w.message) for w in caught if w.category is DeprecationWarning]\n"
        "    assert len(messages) == 1 and new in messages[0], (old, messages)\n"
        "    assert caught[0].filename == '<string>', caught[0].filename  # the importer's line\n"
        "    assert set(dir(importlib.import_module(new))) <= set(dir(module))\n"
        "print(len(MOVED_MODULES))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(len(MOVED_MODULES))


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-W", "ignore::DeprecationWarning", "-c", code],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_forwarded_names_are_the_new_objects_and_writes_go_through():
    assert _run(
        "import mphate.estimator as old, mphate.embed.estimator as new\n"
        "old.MARKER = 1\n"
        "print(old.MPHATE is new.MPHATE, 'MPHATE' in dir(old), new.MARKER)"
    ) == "True True 1"


def test_an_estimator_pickled_under_the_old_path_still_loads():
    import pickle

    from mphate.embed.estimator import MPHATE

    # protocol 0 names the class as a text line, which is what an 0.1 pickle held
    payload = pickle.dumps(MPHATE(n_components=3), protocol=0)
    old = payload.replace(b"mphate.embed.estimator", b"mphate.estimator")
    assert old != payload
    assert _run(f"import pickle; est = pickle.loads({old!r}); print(type(est).__module__, est.n_components)") \
        == "mphate.embed.estimator 3"
