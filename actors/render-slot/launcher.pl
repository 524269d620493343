#!/usr/bin/perl
# renderbus launcher: a small fork server that starts renderer processes for a render server.
# Forking from this ~5 MB process costs ~1.4 ms; forking the render server's Node process
# itself costs ~5.7 ms (docs/benchmarks.md), so every frame is started from here. Only
# perl-base modules (Debian: Essential), so it runs on every Debian host.
#
# stdin (from the render server), one request at a time:
#   "R <id> <len> <nenv>\n" then <len> bytes: cwd, <nenv> variables NAME=VALUE, argv[0], argv[1], ...
#   separated by NUL. The variables are the process's whole environment: the launcher's own
#   never passes (it may hold nothing of the render server's, and renderers get only theirs).
# stdout (to the render server):
#   "S <id> <pid>\n"             started (in a new session: its pid is its process group)
#   "O <id> <fd> <len>\n<bytes>" output from its stdout (1) or stderr (2)
#   "X <id> <code> <signal>\n"   ended, after all its output; code -1 when a signal ended it
#   "E <id> <what> <errno>\n"    could not start: what is 'cwd', 'exec' or 'fork'
# The render server kills a process group itself (it knows the pid). When stdin closes, the
# render server is gone (a clean stop cancels every task first): the launcher stops what still
# runs (SIGTERM to each process group, SIGKILL 5 s later) and exits once all have ended, so no
# renderer outlives its render server.
use strict;
use warnings;
use POSIX qw(setsid _exit WNOHANG);
use IO::Select;
use Errno qw(EINTR EAGAIN);

binmode STDIN;
binmode STDOUT;
$SIG{CHLD} = sub { };    # wakes select when a child ends
$SIG{PIPE} = 'IGNORE';

my $sel = IO::Select->new(\*STDIN);
my (%pipe, %open, %kid, %status, %ended);    # fileno -> [id, fd, fh]; id -> open pipes; pid -> id; id -> wait status, time reaped
my $in = '';
my $eof = 0;    # when the render server went away (0 while it is there)

# The render server is gone (stdin closed, or stdout broken because it died while we were
# starting a renderer): stop every renderer, and exit once all have ended. Each is signalled as
# a group and by pid: a child killed between fork and setsid has no group of its own yet.
sub server_gone {
  return if $eof;
  $eof = time;
  $sel->remove(\*STDIN);
  kill 'TERM', -$_, $_ for keys %kid;
}

sub emit {
  my ($s) = @_;
  return if $eof;    # nobody is reading any more
  while (length $s) {
    my $n = syswrite(STDOUT, $s);
    if (!defined $n) { next if $! == EINTR || $! == EAGAIN; server_gone(); return; }
    substr($s, 0, $n) = '';
  }
}

sub finish {
  my ($id) = @_;
  return if $open{$id} || !defined $status{$id};
  my $st = delete $status{$id};
  delete $open{$id};
  delete $ended{$id};
  my $sig = $st & 127;
  emit($sig ? "X $id -1 $sig\n" : "X $id " . ($st >> 8) . " 0\n");
}

sub reap {
  while ((my $pid = waitpid(-1, WNOHANG)) > 0) {
    my $id = delete $kid{$pid};
    next unless defined $id;
    $status{$id} = $?;
    $ended{$id} = time;
    finish($id);
  }
}

sub launch {
  my ($id, $nenv, $payload) = @_;
  my ($cwd, @rest) = split /\0/, $payload, -1;
  my @env = splice @rest, 0, $nenv;
  my @argv = @rest;
  pipe(my $or, my $ow) or return emit("E $id fork " . ($! + 0) . "\n");
  pipe(my $er, my $ew) or return emit("E $id fork " . ($! + 0) . "\n");
  pipe(my $xr, my $xw) or return emit("E $id fork " . ($! + 0) . "\n");    # close-on-exec: EOF means exec worked
  my $pid = fork();
  if (!defined $pid) { emit("E $id fork " . ($! + 0) . "\n"); return; }
  if ($pid == 0) {
    $SIG{CHLD} = 'DEFAULT';
    $SIG{PIPE} = 'DEFAULT';
    setsid();
    open(STDIN, '<', '/dev/null');
    open(STDOUT, '>&', $ow);
    open(STDERR, '>&', $ew);
    if (!chdir $cwd) { syswrite($xw, "cwd " . ($! + 0)); _exit(127); }
    %ENV = map { split /=/, $_, 2 } @env;    # exec (and its PATH search) sees only these
    { no warnings 'exec'; exec { $argv[0] } @argv; }
    syswrite($xw, "exec " . ($! + 0));
    _exit(127);
  }
  close $ow;
  close $ew;
  close $xw;
  my $err = '';
  while (1) { my $n = sysread($xr, $err, 64, length $err); last if defined $n && $n == 0; next if !defined $n && $! == EINTR; last if !defined $n || length $err >= 64; }
  close $xr;
  if ($err ne '') {
    waitpid($pid, 0);
    close $or;
    close $er;
    emit("E $id $err\n");
    return;
  }
  $kid{$pid} = $id;
  $open{$id} = 2;
  emit("S $id $pid\n");
  for ([$or, 1], [$er, 2]) {
    my ($fh, $fd) = @$_;
    $pipe{fileno $fh} = [$id, $fd, $fh];
    $sel->add($fh);
  }
}

sub requests {
  while ($in =~ /\A(R (\d+) (\d+) (\d+)\n)/) {
    my ($head, $id, $len, $nenv) = ($1, $2, $3, $4);
    return if length($in) < length($head) + $len;
    my $payload = substr($in, length $head, $len);
    substr($in, 0, length($head) + $len) = '';
    launch($id, $nenv, $payload);
  }
  die "launcher: bad request\n" if length $in && $in !~ /\AR/;
}

while (1) {
  reap();
  exit 0 if $eof && !%kid && !%open;
  if ($eof && time - $eof >= 5) { kill 'KILL', -$_, $_ for keys %kid; }
  # a grandchild that keeps the pipes open (`sh -c 'daemon &'`) must not hold the result forever
  for my $fno (keys %pipe) {
    my $p = $pipe{$fno};
    next unless defined $ended{$p->[0]} && time - $ended{$p->[0]} >= 2;
    $sel->remove($p->[2]);
    close $p->[2];
    delete $pipe{$fno};
    $open{$p->[0]}--;
    finish($p->[0]);
  }
  my @ready = $sel->can_read(0.5);
  for my $fh (@ready) {
    if (fileno $fh == fileno STDIN) {
      my $n = sysread(STDIN, $in, 65536, length $in);
      next if !defined $n && ($! == EINTR || $! == EAGAIN);
      if (!$n) {
        server_gone();
        next;
      }
      requests();
      next;
    }
    my $p = $pipe{fileno $fh};
    my $buf;
    my $n = sysread($fh, $buf, 65536);
    next if !defined $n && ($! == EINTR || $! == EAGAIN);
    if ($n) { emit("O $p->[0] $p->[1] $n\n$buf"); next; }
    $sel->remove($fh);
    delete $pipe{fileno $fh};
    close $fh;
    $open{$p->[0]}--;
    reap();
    finish($p->[0]);
  }
}
