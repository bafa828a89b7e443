"""The integration worker: runs imports, exports, file drops and housekeeping job types."""
