"""Local fleets: the fleet server and agents as child processes on loopback (quickstart, simulate)."""
