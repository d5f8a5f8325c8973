"""Clients of the external APIs, built on httpx with their base URLs from settings."""
