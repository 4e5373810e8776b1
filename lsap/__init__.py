"""lsap."""
