"""OSC control surface (UDP server, namespace, OSCQuery). Never imports torch."""
