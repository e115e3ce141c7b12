"""Example sslkit plugin: VICReg."""
