#!/usr/bin/perl
# A quick smoke test of one memcached binary: start it on a free loopback
# port, store, read, count and delete a key, stop it by its PID.
#
# Usage: smoke.pl BINARY
# Prints "smoke: ok" or "smoke: <what went wrong>", exits 0 or 1. Used by
# scripts/patches-check on every prefix of the series, where running the
# whole upstream suite would be too slow.
use strict;
use warnings;
use IO::Socket::INET;
use POSIX qw(WNOHANG);

my $binary = shift or die "usage: $0 BINARY\n";
-x $binary or fail("$binary is not an executable");

sub fail {
    print "smoke: $_[0]\n";
    exit 1;
}

# A port the kernel just handed out; free unless someone races us.
sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp', Listen => 1)
        or fail("cannot find a free port: $!");
    my $port = $s->sockport;
    close $s;
    return $port;
}

my $port = free_port();
my @args = ($binary, '-l', '127.0.0.1', '-p', $port, '-U', '0');
push @args, '-u', 'root' if $< == 0;
my $pid = fork() // fail("fork: $!");
if ($pid == 0) {
    open STDOUT, '>', '/dev/null';
    exec @args or exit 127;
}

my $sock;
for (1 .. 100) {
    $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp') and last;
    if (waitpid($pid, WNOHANG) == $pid) {
        fail("@args exited with status " . ($? >> 8) . " before accepting connections");
    }
    select undef, undef, undef, 0.1;
}
unless ($sock) {
    kill 'KILL', $pid;
    waitpid $pid, 0;
    fail("@args did not accept connections on port $port within 10 s");
}

# Each step: a request and the exact reply it must get.
my @steps = (
    ["set smoke 5 0 5\r\nhello\r\n", "STORED\r\n"],
    ["get smoke\r\n",                "VALUE smoke 5 5\r\nhello\r\nEND\r\n"],
    ["set n 0 0 2\r\n41\r\n",         "STORED\r\n"],
    ["incr n 1\r\n",                 "42\r\n"],
    ["delete smoke\r\n",             "DELETED\r\n"],
    ["get smoke\r\n",                "END\r\n"],
);
my $error;
$sock->autoflush(1);
for my $step (@steps) {
    my ($request, $expected) = @$step;
    print $sock $request;
    my $reply = '';
    while (length($reply) < length($expected)) {
        my $line = <$sock>;
        last unless defined $line;
        $reply .= $line;
    }
    if ($reply ne $expected) {
        (my $r = $request) =~ s/\r\n/\\r\\n/g;
        (my $got = $reply) =~ s/\r\n/\\r\\n/g;
        (my $want = $expected) =~ s/\r\n/\\r\\n/g;
        $error = "request '$r' got '$got', expected '$want'";
        last;
    }
}
close $sock;
kill 'TERM', $pid;
waitpid $pid, 0;
fail($error) if $error;
print "smoke: ok\n";
exit 0;
