getent group apg-biometric >/dev/null || groupadd --system apg-biometric
getent passwd apg-biometric >/dev/null || useradd --system --gid apg-biometric --home-dir /var/lib/apg-biometric-hub \
    --no-create-home --shell /sbin/nologin --comment "apg-biometric" apg-biometric
install -d -o root -g apg-biometric -m 0750 /etc/apg-biometric
chown root:apg-biometric /etc/apg-biometric/hub.yaml && chmod 0640 /etc/apg-biometric/hub.yaml
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || :
    if [ "$1" -eq 1 ]; then systemctl enable --now apg-biometric-hub.service || :; else systemctl try-restart apg-biometric-hub.service || :; fi
else
    echo "apg-biometric-hub: systemd is not running here; start it with runuser -u apg-biometric -- /usr/bin/apg-biometric-hub --config /etc/apg-biometric/hub.yaml"
fi
