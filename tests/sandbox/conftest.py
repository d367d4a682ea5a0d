"""The sandbox fixtures (`sandbox_cache`, `sandbox_task`) live in tests/conftest.py, shared by every test package."""
