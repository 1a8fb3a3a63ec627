"""The export in this folder and the report CSVs in md/ that tests/test_export.py regenerates from it.

    ./dev python tests/data/exported-study/make.py          # md/*.csv again from the export here (after an
                                                            # analysis change meant to change them)
    ./dev python tests/data/exported-study/make.py --new    # a new synthetic study (new run ids), exported here

The study is tests/test_export.py's: analysis.synthetic's layout in a real MLflow store, with a failed trial,
a duplicate run, confirm points and a timing run. Only the CSVs of its report are kept (md/), the files a
published study's README quotes.
"""

import shutil
import sys
import tempfile
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from study import cli  # noqa: E402
from test_export import NAME, make_study  # noqa: E402


def main() -> None:
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory(prefix="uwm-fixture-") as tmp:
        if "--new" in sys.argv[1:]:
            uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
            make_study(uri)
            assert cli.main(["export", NAME, "--out", str(HERE), "--tracking-uri", uri, "--force"]) == 0
        assert cli.main(["report", "--from", str(HERE), "--out", str(Path(tmp) / "md"), "--format", "md"]) == 0
        shutil.rmtree(HERE / "md", ignore_errors=True)
        (HERE / "md").mkdir()
        for csv in sorted((Path(tmp) / "md").glob("*.csv")):
            shutil.copy(csv, HERE / "md" / csv.name)


if __name__ == "__main__":
    main()
