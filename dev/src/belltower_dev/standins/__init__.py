"""Local stand-ins for outside systems (an LMS API, an SFTP server), built to their published contracts."""
