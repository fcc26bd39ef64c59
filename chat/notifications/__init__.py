"""Device notifications: Web Push, FCM and APNs for recipients who did not see a message live.

``devices`` (registering devices, settings, muting a chat), ``rule`` (when a message
notifies, and what the notification says), ``sending`` (one attempt per device, claimed in
the database, retried, swept), ``providers`` (the three protocols on the wire), ``keys`` (the
VAPID key pair). See docs/notifications.md.
"""

from chat.notifications import devices, keys, providers, rule, sending  # noqa: F401
