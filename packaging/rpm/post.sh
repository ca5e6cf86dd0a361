# %post: the data directory; on a first install enable the unit as the
# presets say and start it if enabled, only when systemd is PID 1.
if command -v systemd-tmpfiles >/dev/null 2>&1; then
  systemd-tmpfiles --create /usr/lib/tmpfiles.d/broker-edge.conf >/dev/null 2>&1 || :
fi
install -d -o broker-edge -g broker-edge -m 0750 /var/lib/broker-edge
# The configuration may hold passwords: root and the service only.
chgrp broker-edge /etc/broker-edge/broker-edge.conf
chmod 0640 /etc/broker-edge/broker-edge.conf
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || :
  if [ "$1" -eq 1 ]; then
    systemctl --no-reload preset broker-edge.service >/dev/null 2>&1 || :
    if systemctl --quiet is-enabled broker-edge.service 2>/dev/null; then
      systemctl start broker-edge.service >/dev/null 2>&1 || :
    fi
  fi
fi
exit 0
