"""Sample scans for orthofit and the virtual scanner that makes them from the CC0 MakeHuman body.

``makehuman`` cuts true limbs from the MakeHuman base mesh, ``virtual_scanner``
scans them like a handheld structured-light scanner, and ``make_samples``
writes the bundled samples and on-demand scans with their truth.  Nothing here
imports orthofit.
"""
