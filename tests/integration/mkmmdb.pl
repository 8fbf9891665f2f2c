#!/usr/bin/perl
# Write a GeoIP2-Country-shaped .mmdb for the geo tests.
#
#   mkmmdb.pl [-4] OUT NET=CC [NET=CC ...]
#
# NET is an address or CIDR range (IPv4 or IPv6); CC an ISO 3166-1 alpha-2 code
# stored as country.iso_code, or "@CC" to store it only as
# registered_country.iso_code (the lookup's fallback). "::ffff:a.b.c.d" is
# written as a.b.c.d. -4 writes an IPv4-only database (ip_version 4). The file
# is written next to OUT and renamed over it, so a reader never sees half a
# database.
#
# Loopback and other reserved ranges are kept (remove_reserved_networks => 0)
# and IPv4 is aliased into the IPv6 tree (alias_ipv6_to_ipv4 => 1), so
# 127.0.0.2 and ::ffff:127.0.0.2 answer the same.
use strict;
use warnings;
use MaxMind::DB::Writer::Tree;

my $v4only = 0;
if (@ARGV && $ARGV[0] eq '-4') {
    $v4only = 1;
    shift @ARGV;
}
die "usage: $0 [-4] OUT NET=CC [NET=CC ...]\n" unless @ARGV >= 1;
my $out = shift @ARGV;

my %types = (
    country            => 'map',
    registered_country => 'map',
    iso_code           => 'utf8_string',
);

my $tree = MaxMind::DB::Writer::Tree->new(
    ip_version               => $v4only ? 4 : 6,
    record_size              => 24,
    database_type            => 'GeoIP2-Country',
    languages                => ['en'],
    description              => { en => 'Shield test geo database' },
    map_key_type_callback    => sub { $types{ $_[0] } },
    remove_reserved_networks => 0,
    alias_ipv6_to_ipv4       => $v4only ? 0 : 1,
);

for my $arg (@ARGV) {
    my ($net, $cc) = split /=/, $arg, 2;
    die "bad argument '$arg' (want NET=CC)\n" unless defined $cc && $cc =~ /^\@?[A-Za-z]{2}$/;
    # An IPv4-mapped network is the IPv4 network: the v6 spelling is an alias
    # in the tree (and does not exist in an IPv4-only one).
    if ($net =~ m{^::ffff:(\d+\.\d+\.\d+\.\d+)(?:/(\d+))?$}i) {
        $net = $1 . (defined $2 ? '/' . ($2 - 96) : '');
    }
    $net .= ($net =~ /:/ ? '/128' : '/32') unless $net =~ m{/};
    my $record = $cc =~ s/^\@//
        ? { registered_country => { iso_code => $cc } }
        : { country => { iso_code => $cc } };
    $tree->insert_network($net, $record);
}

my $tmp = "$out.tmp.$$";
open my $fh, '>:raw', $tmp or die "$tmp: $!\n";
$tree->write_tree($fh);
close $fh or die "$tmp: $!\n";
rename $tmp, $out or die "rename $tmp -> $out: $!\n";
