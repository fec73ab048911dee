"""Serving processes: ``reserve serve`` runs one worker in this process or supervises several
sharing one listening socket; every mode drains sessions on SIGTERM, then stops hypercorn
through its shutdown trigger."""
