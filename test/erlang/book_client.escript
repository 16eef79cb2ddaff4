#!/usr/bin/env escript
%% A client of the original lib_chan protocol, written for lib-chan's tests from docs/ERLANG.md: {packet, 4},
%% term_to_binary, and the MD5 challenge-response. Usage:
%%   book_client.escript Port Service Secret book       the book session; prints each answer on a line
%%   book_client.escript Port Service Secret connect    prints what connecting gives: ok, or {error, Why}
%%   book_client.escript Port Service Secret types      sends each term of a list and prints each answer
%% Secret "none" connects without one. Services are sent as atoms, as the book's client does.
main([PortText, Service, Secret, Mode]) ->
    io:setopts([{encoding, unicode}]),
    Port = list_to_integer(PortText),
    case connect(Port, list_to_atom(unicode:characters_to_list(list_to_binary(Service))), Secret) of
        {ok, S} ->
            run(Mode, S);
        {error, Why} ->
            io:format("~w~n", [{error, Why}]),
            halt(0)
    end.

connect(Port, Service, Secret) ->
    {ok, S} = gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {packet, 4}, {active, false}]),
    send(S, {startService, Service, []}),
    case recv(S) of
        ack -> {ok, S};
        {challenge, C} when Secret =/= "none" ->
            send(S, {response, md5_hex(C ++ Secret)}),
            case recv(S) of
                ack -> {ok, S};
                Other -> {error, Other}
            end;
        Other -> {error, Other}
    end.

md5_hex(Text) ->
    lists:flatten([io_lib:format("~2.16.0b", [B]) || <<B>> <= erlang:md5(Text)]).

send(S, Term) -> ok = gen_tcp:send(S, term_to_binary(Term)).

recv(S) ->
    case gen_tcp:recv(S, 0, 10000) of
        {ok, Bin} -> binary_to_term(Bin);
        {error, Why} -> {closed, Why}
    end.

rpc(S, Q) -> send(S, Q), recv(S).

run("connect", _S) ->
    io:format("ok~n");
run("book", S) ->
    send(S, {store, joe, "writing a book"}),
    io:format("~p~n", [rpc(S, {lookup, joe})]),
    io:format("~p~n", [rpc(S, {lookup, jim})]),
    send(S, {store, 'Ünïcødé', "∞ and ü"}),
    io:format("~w~n", [rpc(S, {lookup, 'Ünïcødé'})]),
    gen_tcp:close(S);
run("types", S) ->
    Terms = [42, -7, 1 bsl 62, 2.5, 1.0, atom, 'Ünïcødé', "string", "∞", [], [1, [2]], <<1, 2, 3>>, {a, {b}},
             #{k => v, "s" => 1}, true, false],
    [io:format("~w~n", [rpc(S, {echo, T})]) || T <- Terms],
    gen_tcp:close(S).
