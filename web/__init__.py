"""What the guide console and the HQ dashboard share on the web side: password hashing, who may
log in, login limits, sessions, and the bounded page server. It imports nothing else of footfall."""
