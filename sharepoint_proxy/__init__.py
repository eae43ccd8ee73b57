"""Mirror a MinIO object store into a SharePoint Online document library."""

__version__ = "0.1.0"
