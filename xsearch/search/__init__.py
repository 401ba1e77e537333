"""Query planning: turning queries into one vector and hits with their files and times."""
