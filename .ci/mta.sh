#!/usr/bin/env bash
# A real MTA for the tests: postfix from Debian, listening on 127.0.0.1:25 only, delivering
# mail for @mailbox.test (and @localhost) to local users' ~/Maildir/ without DNS. Creates
# the user member1, so mail to member1@mailbox.test lands in /home/member1/Maildir/new/.
# Runs as root, without systemd; safe to run again (then it only checks config and process).
set -euo pipefail

MAIL_USER=member1
MAIL_DOMAIN=mailbox.test

say() { printf 'MTA: %s\n' "$*"; }
die() { printf 'MTA: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root"

# 1. Install postfix (non-interactive, "Local only") when it is not there yet.
if [ "$(dpkg-query -W -f='${Status}' postfix 2>/dev/null || true)" != "install ok installed" ]; then
  say "installing postfix"
  echo "postfix postfix/main_mailer_type select Local only" | debconf-set-selections
  echo "postfix postfix/mailname string localhost" | debconf-set-selections
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix >/dev/null
else
  say "postfix already installed"
fi

# 2. Configuration. Only rewrite a setting when its value differs, so a re-run changes nothing.
declare -A want=(
  [myhostname]="localhost"
  [mydomain]="localdomain"
  [myorigin]="localhost"
  [mydestination]="localhost, localhost.localdomain, $MAIL_DOMAIN"
  [inet_interfaces]="loopback-only"
  [inet_protocols]="ipv4"
  [mynetworks]="127.0.0.0/8"
  [relayhost]=""
  [home_mailbox]="Maildir/"
  [mailbox_command]=""
  [smtpd_banner]="\$myhostname ESMTP"
  # No STARTTLS: the portier broker's SMTP client (lettre, Tls::Opportunistic) would upgrade
  # whenever it is offered and then fail to verify Debian's self-signed snakeoil certificate.
  [smtpd_tls_security_level]="none"
  [smtp_tls_security_level]="none"
  # Everything stays local: no DNS, no relaying anywhere, no comsat.
  [smtp_dns_support_level]="disabled"
  [default_transport]="error:outbound mail is disabled on this CI host"
  [relay_transport]="error:outbound mail is disabled on this CI host"
  [biff]="no"
  [maillog_file]="/var/log/postfix.log"
)
changed=()
for key in "${!want[@]}"; do
  if [ "$(postconf -h "$key" 2>/dev/null)" != "${want[$key]}" ]; then
    postconf -e "$key = ${want[$key]}"
    changed+=("$key")
  fi
done
# Debian runs smtpd, cleanup and others chrooted in /var/spool/postfix, which only its init
# script fills (hosts, services, resolv.conf); started with `postfix start`, the chroot is empty
# (client shown as unknown[127.0.0.1]). Nothing here needs the chroot: run without it.
if postconf -Fh '*/*/chroot' | grep -qx y; then
  postconf -F '*/*/chroot = n'
  changed+=("master.cf:chroot")
fi
if [ "${#changed[@]}" -gt 0 ]; then
  say "configured: ${changed[*]}"
else
  say "configuration already in place"
fi
[ -f /etc/aliases ] || printf 'postmaster: root\n' >/etc/aliases
if [ ! -f /etc/aliases.db ] || [ /etc/aliases -nt /etc/aliases.db ]; then
  newaliases
fi
postfix check || die "postfix check failed"

# 3. The mailbox owner.
if ! id "$MAIL_USER" >/dev/null 2>&1; then
  say "creating user $MAIL_USER"
  useradd -m "$MAIL_USER"
fi
home="$(getent passwd "$MAIL_USER" | cut -d: -f6)"
[ -d "$home" ] || install -d -o "$MAIL_USER" -g "$MAIL_USER" -m 0755 "$home"
# The Maildir exists before the first delivery (postfix would make it then), so that a test can
# tell a machine with this mailbox from one without.
for sub in "" /new /cur /tmp; do
  install -d -o "$MAIL_USER" -g "$MAIL_USER" -m 0700 "$home/Maildir$sub"
done

# 4. Start, or reload (restart when the listening addresses changed, which reload ignores).
if postfix status >/dev/null 2>&1; then
  if printf '%s\n' "${changed[@]}" | grep -qx -e inet_interfaces -e inet_protocols; then
    say "restarting postfix (listening addresses changed)"
    postfix stop >/dev/null 2>&1
    for _ in $(seq 1 20); do postfix status >/dev/null 2>&1 || break; sleep 0.5; done
    postfix start >/dev/null 2>&1 || die "postfix start failed (see /var/log/postfix.log)"
  else
    say "reloading postfix"
    postfix reload >/dev/null 2>&1 || die "postfix reload failed (see /var/log/postfix.log)"
  fi
else
  say "starting postfix"
  postfix start >/dev/null 2>&1 || die "postfix start failed (see /var/log/postfix.log)"
fi

# 5. Wait until 127.0.0.1:25 answers with a 220 banner.
banner=""
deadline=$((SECONDS + 30))
while [ "$SECONDS" -lt "$deadline" ]; do
  banner="$(timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/25 && IFS= read -r l <&3 && printf "%s" "$l" && printf "QUIT\r\n" >&3' 2>/dev/null || true)"
  case "$banner" in 220*) break ;; esac
  sleep 0.5
done
case "$banner" in
  220*) ;;
  *) tail -n 20 /var/log/postfix.log >&2 2>/dev/null || true
     die "nothing answered a 220 banner on 127.0.0.1:25 within 30 s (got: '${banner%$'\r'}')" ;;
esac

say "postfix on 127.0.0.1:25, mailbox $home/Maildir"
