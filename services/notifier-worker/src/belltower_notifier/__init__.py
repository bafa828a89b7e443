"""The notifier worker: runs notifier job types (alerts, e-mails, reminders)."""
