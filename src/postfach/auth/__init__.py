"""Authentication shared by every door: password hashing and generation, and checking a login."""
