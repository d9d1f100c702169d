"""The GPU test set (see conftest.py): a package, so that its conftest does not shadow tests/conftest.py."""
