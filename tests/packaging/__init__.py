"""The installed wheel and the systemd service as an admin meets them."""
