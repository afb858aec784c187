"""Where the shared Teaclave test data lives: ``<repo>/../shared/fixtures/teaclave``."""

from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "teaclave"
PSI_DIR = FIXTURES / "functions" / "ordered_set_intersect"
