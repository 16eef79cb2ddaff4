#!/usr/bin/env escript
%% A server of the original lib_chan protocol with the book's name server, written for lib-chan's tests from
%% docs/ERLANG.md. Usage: book_server.escript Service Secret (Secret "none": a service without one). Listens on a free
%% port of 127.0.0.1, prints it on a line, and serves until it is killed. {store, K, V} stores (no answer);
%% {lookup, K} answers {ok, V} or undefined; {echo, X} answers X; {silent, _} answers nothing;
%% {twice, X} answers X twice.
main([Service, Secret]) ->
    {ok, L} = gen_tcp:listen(0, [binary, {packet, 4}, {active, false}, {reuseaddr, true}, {ip, {127, 0, 0, 1}}]),
    {ok, Port} = inet:port(L),
    io:format("~w~n", [Port]),
    Store = spawn(fun() -> store(#{}) end),
    accept(L, list_to_atom(Service), Secret, Store).

accept(L, Service, Secret, Store) ->
    {ok, S} = gen_tcp:accept(L),
    Pid = spawn(fun() -> receive go -> start(S, Service, Secret, Store) end end),
    ok = gen_tcp:controlling_process(S, Pid),
    Pid ! go,
    accept(L, Service, Secret, Store).

start(S, Service, Secret, Store) ->
    case recv(S) of
        {startService, Service, _ArgsC} when Secret =:= "none" ->
            send(S, ack),
            loop(S, Store);
        {startService, Service, _ArgsC} ->
            C = [$a + rand:uniform(26) - 1 || _ <- lists:seq(1, 25)],
            send(S, {challenge, C}),
            Expected = lists:flatten([io_lib:format("~2.16.0b", [B]) || <<B>> <= erlang:md5(C ++ Secret)]),
            case recv(S) of
                {response, Expected} -> send(S, ack), loop(S, Store);
                _ -> send(S, authFail), gen_tcp:close(S)
            end;
        {startService, _Other, _} ->
            send(S, badService),
            gen_tcp:close(S);
        _ ->
            gen_tcp:close(S)
    end.

loop(S, Store) ->
    case recv(S) of
        {store, K, V} -> Store ! {store, K, V}, loop(S, Store);
        {lookup, K} -> Store ! {lookup, K, self()}, receive {found, R} -> send(S, R) end, loop(S, Store);
        {echo, X} -> send(S, X), loop(S, Store);
        {silent, _} -> loop(S, Store);
        {twice, X} -> send(S, X), send(S, X), loop(S, Store);
        closed -> ok;
        _ -> loop(S, Store)
    end.

store(M) ->
    receive
        {store, K, V} -> store(M#{K => V});
        {lookup, K, From} ->
            From ! {found, case M of #{K := V} -> {ok, V}; _ -> undefined end},
            store(M)
    end.

send(S, T) -> gen_tcp:send(S, term_to_binary(T)).

recv(S) ->
    case gen_tcp:recv(S, 0) of
        {ok, B} -> binary_to_term(B);
        {error, _} -> closed
    end.
