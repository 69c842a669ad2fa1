# apg-biometric-agent (rpm): service account, master key, state directory, udev, systemd.
USER_NAME=apg-biometric
getent group "$USER_NAME" >/dev/null || groupadd --system "$USER_NAME"
getent passwd "$USER_NAME" >/dev/null || useradd --system --gid "$USER_NAME" --home-dir /var/lib/apg-biometric \
    --no-create-home --shell /sbin/nologin --comment "apg-biometric agent" "$USER_NAME"
for group in plugdev video audio dialout lock; do
    getent group "$group" >/dev/null && usermod -a -G "$group" "$USER_NAME"
done
install -d -o root -g "$USER_NAME" -m 0750 /etc/apg-biometric
chown root:"$USER_NAME" /etc/apg-biometric/agent.yaml && chmod 0640 /etc/apg-biometric/agent.yaml
install -d -o "$USER_NAME" -g "$USER_NAME" -m 0750 /var/lib/apg-biometric /var/lib/apg-biometric/backups
if [ ! -e /etc/apg-biometric/master.key ]; then
    /usr/bin/apg-biometric keys init --file /etc/apg-biometric/master.key >/dev/null
    echo "apg-biometric-agent: created the master key /etc/apg-biometric/master.key; back it up somewhere safe."
fi
chown "$USER_NAME":"$USER_NAME" /etc/apg-biometric/master.key && chmod 0600 /etc/apg-biometric/master.key
if command -v udevadm >/dev/null && [ -d /run/udev ]; then
    udevadm control --reload-rules || :
    udevadm trigger --action=add --subsystem-match=usb --subsystem-match=tty --subsystem-match=video4linux --subsystem-match=sound || :
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || :
    if [ "$1" -eq 1 ]; then systemctl enable --now apg-biometric-agent.service || :; else systemctl try-restart apg-biometric-agent.service || :; fi
else
    echo "apg-biometric-agent: systemd is not running here; start the agent with:"
    echo "  runuser -u $USER_NAME -- /usr/bin/apg-biometric-agent run --config /etc/apg-biometric/agent.yaml"
fi
