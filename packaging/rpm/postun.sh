# %postun: restart a running service after an upgrade ($1 >= 1). An erase
# keeps /var/lib/broker-edge and the user: RPM has no purge, remove them by
# hand (rm -rf /var/lib/broker-edge; userdel broker-edge).
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || :
  if [ "$1" -ge 1 ]; then
    systemctl try-restart broker-edge.service >/dev/null 2>&1 || :
  fi
fi
exit 0
