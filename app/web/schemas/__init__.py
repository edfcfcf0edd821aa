"""Pydantic models of the API's JSON."""
