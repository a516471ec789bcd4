"""The orthofit review service: orthotists submit, review and approve; print labs download.

A FastAPI app (:mod:`service.app`) over a database (:mod:`service.db`, SQLite
by default, PostgreSQL by ``ORTHOFIT_DATABASE_URL``), a data folder
(:mod:`service.storage`) and a pool of worker processes that run
``orthofit design`` (:mod:`service.jobs`).  Routes never do geometry.
"""
