"""The orthofit review service: orthotists submit, review and approve; print labs download.

A FastAPI app (:mod:`service.app`, routers in :mod:`service.routes`) over a
database (:mod:`service.db`, SQLite by default, PostgreSQL by
``ORTHOFIT_DATABASE_URL``), a data folder (:mod:`service.storage`) and a pool
of worker processes that run ``orthofit design`` (:mod:`service.jobs`).
:mod:`service.gate` checks keys before bodies are read and audits every
request to a case or an admin route.  Routes never do geometry.
"""
